"""Host tools from Python: functions on this machine that sandboxed code calls like plain
functions, answered by `run_stream(..., tools=...)` while the code waits."""

from __future__ import annotations

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
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    }
