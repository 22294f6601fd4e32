"""Host tools from Python: functions on this machine that sandboxed code calls like plain
functions, answered by `run_stream(..., tools=...)` while the code waits."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Annotated, Literal

import pytest

from moat_client import HostTool, MoatClient, MoatSession, OutputEvent, RunResult, ToolCallEvent

API_KEY = "sk-test-9d8c7b6a5f4e"


def weather(city: str, unit: str = "C") -> dict:
    """The weather in a city."""
    # The key stays here: the sandbox sees only the name, the docstring and the schema.
    assert API_KEY.startswith("sk-")
    return {"city": city, "temp": 21, "unit": unit}


def test_a_function_is_a_tool_and_its_result_a_python_value(session: MoatSession) -> None:
    events = list(session.run_stream(
        "print('asking')\nw = weather('Paris')\nw['temp'] + 1", tools=[weather]
    ))
    result = events[-1]
    assert isinstance(result, RunResult) and result.error is None, result
    assert result.result == 22
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.name, c.arguments, c.error) for c in calls] == [("weather", {"city": "Paris"}, None)]
    assert isinstance(events[0], OutputEvent) and events[0].text == "asking\n"


def test_run_with_tools_answers_calls_and_the_key_never_reaches_the_sandbox(
    session: MoatSession,
) -> None:
    result = session.run(
        "a = weather(city='Oslo', unit='F')\nb = weather('Rome')\n"
        "import os, sys\nseen = repr(dict(os.environ)) + repr(globals()) + weather.__doc__\n"
        "[a['unit'], b['city'], 'sk-' in seen, 'The weather in a city.' in seen]",
        tools={"weather": weather},
    )
    assert result.error is None, result.error
    assert result.result == ["F", "Rome", False, True]


def test_an_exception_is_a_tool_error_in_the_sandbox(session: MoatSession) -> None:
    def lookup(key: str) -> str:
        raise KeyError(key)

    result = session.run(
        "try:\n    lookup('x')\nexcept ToolError as e:\n    out = str(e)\nout", tools=[lookup]
    )
    assert result.result == "KeyError: 'x'"


def test_explicit_definitions_and_values_that_are_not_json(client: MoatClient) -> None:
    tool = HostTool(
        "now", lambda: object(), "An object that is not JSON.", {"type": "object", "properties": {}}
    )
    result = client.run("type(now()).__name__", tools=[tool])
    assert result.result == "str"


def test_the_schema_comes_from_the_signature() -> None:
    from moat_client.tools import HostTool

    tool = HostTool.from_function(weather)
    assert tool.definition() == {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "default": "C"}},
            "required": ["city"],
        },
    }


def test_several_calls_in_one_cell_are_each_answered_in_order(session: MoatSession) -> None:
    seen: list[int] = []

    def square(n: int) -> int:
        """The square of n."""
        seen.append(n)
        return n * n

    events = list(session.run_stream(
        "total = 0\nfor i in range(5):\n    total += square(i)\n    print(i)\ntotal",
        tools=[square],
    ))
    assert events[-1].result == 30, events[-1]
    calls = [e for e in events if isinstance(e, ToolCallEvent)]
    assert [c.arguments for c in calls] == [{"n": i} for i in range(5)]
    assert len({c.id for c in calls}) == 5
    assert seen == [0, 1, 2, 3, 4]
    printed = "".join(e.text for e in events if isinstance(e, OutputEvent))
    assert printed == "0\n1\n2\n3\n4\n"


def test_the_key_stays_here_whatever_the_code_prints(session: MoatSession) -> None:
    def charge(amount: float) -> dict:
        """Charges the card on file."""
        return {"ok": True, "amount": amount, "authorized_with": API_KEY[:3] + "…"}

    result = session.run(
        "import os, sys\nr = charge(9.5)\nprint(globals())\nprint(dict(os.environ))\n"
        "print(charge.__doc__)\nprint(sys.modules.keys())\nr",
        tools={"charge": charge},
    )
    assert result.error is None, result.error
    assert result.result == {"ok": True, "amount": 9.5, "authorized_with": "sk-…"}
    assert "Charges the card on file." in result.stdout
    assert API_KEY not in result.stdout + result.stderr + repr(result.raw)


def test_wrong_arguments_from_the_code_are_a_tool_error_it_can_read(session: MoatSession) -> None:
    result = session.run(
        "try:\n    weather(town='Paris')\nexcept ToolError as e:\n    out = str(e)\nout",
        tools=[weather],
    )
    assert result.result.startswith("TypeError: "), result
    assert "town" in result.result


def test_an_uncaught_tool_error_is_the_call_s_python_error(session: MoatSession) -> None:
    def fail() -> None:
        raise PermissionError("quota exhausted")

    result = session.run("fail()", tools=[fail])
    assert result.error is not None
    assert result.error.exception_type == "ToolError"
    assert result.error.exception_value == "PermissionError: quota exhausted"
    assert session.run("from moat_tools import ToolError\nissubclass(ToolError, Exception)").result


def test_a_definition_dict_sets_the_schema_and_the_order_of_positional_arguments(
    session: MoatSession,
) -> None:
    def subtract(a: int, b: int) -> int:
        return a - b

    definition = {
        "name": "minus", "function": subtract, "description": "b minus... no: a minus b.",
        "parameters": {"type": "object", "properties": {"b": {"type": "integer"},
                                                        "a": {"type": "integer"}}},
    }
    result = session.run("[minus(1, 10), minus(a=1, b=10), minus.__name__]", tools=[definition])
    assert result.result == [9, -9, "minus"], result


def test_results_json_cannot_hold_are_converted_and_keep_their_structure(
    session: MoatSession,
) -> None:
    @dataclasses.dataclass
    class Booking:
        day: datetime.date
        seats: frozenset

    result = session.run(
        "b = book()\n[b, type(b).__name__]",
        tools={"book": lambda: Booking(datetime.date(2030, 1, 2), frozenset({"3B", "3A"}))},
    )
    assert result.result == [{"day": "2030-01-02", "seats": ["3A", "3B"]}, "dict"], result


def test_a_result_with_nan_is_a_tool_error_saying_why(session: MoatSession) -> None:
    events = list(session.run_stream(
        "try:\n    ratio()\nexcept ToolError as e:\n    out = str(e)\nout",
        tools={"ratio": lambda: float("nan")},
    ))
    assert "cannot be sent as JSON" in events[-1].result, events[-1]
    assert "cannot be sent as JSON" in (events[0].error or "")


def test_a_result_above_the_server_s_limit_is_a_tool_error_and_the_call_goes_on(
    session: MoatSession,
) -> None:
    big = "x" * (5 * 1024 * 1024)  # limits.resultBytes is 4 MiB by default
    events = list(session.run_stream(
        "try:\n    dump()\nexcept ToolError as e:\n    out = str(e)\nout + ' / ' + small()",
        tools={"dump": lambda: big, "small": lambda: "still here"},
    ))
    answer = events[-1]
    assert "limits.resultBytes" in answer.result and answer.result.endswith("still here"), answer
    failed = [e for e in events if isinstance(e, ToolCallEvent) and e.name == "dump"]
    assert failed and "413" in (failed[0].error or ""), failed


def test_a_name_python_cannot_call_is_refused_here_before_any_request() -> None:
    offline = MoatClient("http://127.0.0.1:9", "no-token")  # nothing listens: no request is made
    for bad in ["class", "_private", "search-web", "ünïcode"]:
        with pytest.raises(ValueError, match="must be a Python identifier"):
            offline.run("1", tools={bad: weather})
    with pytest.raises(ValueError, match=r"'<lambda>'.*tools=\{'name': function\}"):
        offline.run_stream("1", tools=[lambda: 1])
    with pytest.raises(ValueError, match="two tools are named 'weather'"):
        offline.run("1", tools=[weather, HostTool.from_function(weather)])


def test_the_schema_carries_hints_defaults_and_the_docstring_s_argument_texts() -> None:
    def search(
        query: str,
        limit: int = 10,
        sites: list[str] | None = None,
        order: Literal["new", "relevant"] = "relevant",
        since: Annotated[str, "ISO 8601 date"] = "",
    ) -> list:
        """Searches the web.

        Args:
            query: what to look for,
                in plain words.
            limit (int): at most this many hits.
        """

    assert HostTool.from_function(search).parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to look for, in plain words."},
            "limit": {"type": "integer", "description": "at most this many hits.", "default": 10},
            "sites": {"type": ["array", "null"], "items": {"type": "string"}, "default": None},
            "order": {"enum": ["new", "relevant"], "type": "string", "default": "relevant"},
            "since": {"type": "string", "description": "ISO 8601 date", "default": ""},
        },
        "required": ["query"],
    }
