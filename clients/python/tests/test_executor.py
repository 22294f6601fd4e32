"""MoatExecutor against a real Moat, as smolagents drives it (`executor(code)`).

These run with or without smolagents installed: without it the executor uses its stand-in
base, with it smolagents' own RemotePythonExecutor and SafeSerializer decode the answers.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from conftest import SWATCH_CODE, Server
from moat_client import MoatClient, RunResult, SessionNotFoundError, is_image
from moat_client.smolagents_executor import AgentError, MoatExecutor


@pytest.fixture
def executor(server: Server) -> Iterator[MoatExecutor]:
    with MoatExecutor(server.url, server.token) as ex:
        yield ex


def raise_final_answer(encoded: str) -> str:
    """The code smolagents' patched final_answer tool runs, reduced to its last line."""
    return (
        "class FinalAnswerException(BaseException):\n"
        "    def __init__(self, value):\n"
        "        self.value = value\n"
        f"raise FinalAnswerException({encoded!r})\n"
    )


def test_code_runs_and_returns_its_value_and_logs(executor: MoatExecutor) -> None:
    out = executor("print('working')\n6 * 7")
    assert (out.output, out.logs, out.is_final_answer) == (42, "working\n", False)


def test_state_persists_between_steps(executor: MoatExecutor) -> None:
    executor("counter = 1")
    executor("counter += 1")
    assert executor("counter").output == 2


@pytest.mark.parametrize(
    "value",
    [
        "the answer",
        "",
        "quotes \" and ' and \\ backslash, tab\t, newline\n, unicode é 世界 🐍",
        "long " * 20_000,
        0,
        42,
        -(2**80),
        3.25,
        True,
        False,
        None,
        [],
        [1, "two", 3.0, None, [True]],
        {},
        {"a": 1, "nested": {"list": [1, 2], "none": None}, "ключ": "значение"},
    ],
    ids=lambda v: type(v).__name__ + (f"-{len(v)}" if isinstance(v, (str, list, dict)) else ""),
)
def test_a_final_answer_of_every_json_type_is_decoded(executor: MoatExecutor, value: Any) -> None:
    out = executor("print('done')\n" + raise_final_answer("safe:" + json.dumps(value)))
    assert out.is_final_answer is True
    assert out.output == value and type(out.output) is type(value)


def test_a_final_answer_keeps_tuples_and_sets_as_smolagents_encodes_them(executor: MoatExecutor) -> None:
    encoded = {"pair": {"__type__": "tuple", "data": [1, 2]}, "tags": {"__type__": "set", "data": ["x"]}}
    out = executor(raise_final_answer("safe:" + json.dumps(encoded)))
    assert out.output == {"pair": (1, 2), "tags": {"x"}}


def test_a_pickled_final_answer_is_refused_by_default(executor: MoatExecutor) -> None:
    with pytest.raises(Exception, match="(?i)pickle"):
        executor(raise_final_answer("pickle:gASVAAAAAAAAAAAu"))


def test_a_python_error_becomes_an_agent_error_with_the_traceback(executor: MoatExecutor) -> None:
    with pytest.raises(AgentError) as caught:
        executor("print('step one')\nvalues = {}\nvalues['missing']")
    text = str(caught.value)
    assert text.startswith("PythonError: ")
    assert "KeyError: 'missing'" in text
    assert "values['missing']" in text
    assert "step one" in text


def test_an_image_result_becomes_a_pil_image_when_pillow_is_here(executor: MoatExecutor) -> None:
    out = executor(SWATCH_CODE + "\nSwatch(2, 2, (0, 0, 255))")
    try:
        import PIL.Image
    except ImportError:
        assert is_image(out.output)
    else:
        assert isinstance(out.output, PIL.Image.Image) and out.output.size == (2, 2)


class RecordingClient(MoatClient):
    """The real client, remembering what each run sent and what the server answered."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.calls: list[tuple[list[str], RunResult]] = []

    def run(self, code: str, packages: Sequence[str] = (), **kwargs: Any) -> RunResult:
        answer = super().run(code, packages, **kwargs)
        self.calls.append((list(packages), answer))
        return answer


def test_additional_imports_are_sent_as_packages_on_every_call(server: Server) -> None:
    name = "no-such-package-for-moat-tests"
    client = RecordingClient(server.url, server.token)
    with MoatExecutor(client=client, additional_imports=["numpy", name, "numpy"]) as ex:
        assert ex.installed_packages == ["numpy", name]
        ex.send_variables({"x": 1})
        ex("x")
        ex("x + 1")
    assert [packages for packages, _ in client.calls] == [["numpy", name]] * 3
    for _, answer in client.calls:
        assert name in str(answer.error) + answer.stderr, "the server was asked for it"


def test_additional_imports_make_their_package_importable(server: Server, numpy_and_pillow: None) -> None:
    with MoatExecutor(server.url, server.token, additional_imports=["numpy"]) as ex:
        assert ex("import numpy\nnumpy.__name__").output == "numpy"


def test_variables_sent_before_a_run_are_globals(executor: MoatExecutor) -> None:
    executor.send_variables({"task_input": {"city": "Zürich", "days": [1, 2]}})
    assert executor("task_input['city'], sum(task_input['days'])").output == ["Zürich", 3]


def test_stderr_reaches_the_logs_under_a_header(executor: MoatExecutor) -> None:
    out = executor("import sys\nprint('out')\nprint('careful', file=sys.stderr)")
    assert out.logs == "out\nPrinted to stderr:\ncareful\n"


def test_stderr_written_before_an_error_is_in_the_error(executor: MoatExecutor) -> None:
    with pytest.raises(AgentError) as caught:
        executor("import sys\nprint('warned', file=sys.stderr)\n1 / 0")
    assert str(caught.value).endswith("Printed to stderr:\nwarned\n")
    assert "ZeroDivisionError" in str(caught.value)


def test_authorized_imports_are_enforced_in_the_sandbox(server: Server) -> None:
    with MoatExecutor(server.url, server.token, additional_authorized_imports=["json"]) as ex:
        assert ex("import json\njson.dumps([1])").output == "[1]"
        with pytest.raises(AgentError, match=r"Import of os is not allowed\. Authorized imports are: \["):
            ex("import os")


def test_a_star_in_authorized_imports_enforces_nothing(server: Server) -> None:
    with MoatExecutor(server.url, server.token, additional_authorized_imports=["*"]) as ex:
        assert ex.authorized_imports is None
        assert ex("import os\nos.sep").output == "/"


def test_cleanup_deletes_the_session_once(server: Server) -> None:
    client = MoatClient(server.url, server.token)
    ex = MoatExecutor(client=client)
    assert client.get_session(ex.session_id).id == ex.session_id
    ex.cleanup()
    ex.cleanup()
    with pytest.raises(SessionNotFoundError):
        client.get_session(ex.session_id)
    with pytest.raises(AgentError, match="404"):
        ex("1")


def test_a_forgotten_executor_still_deletes_its_session(server: Server) -> None:
    client = MoatClient(server.url, server.token)
    session_id = MoatExecutor(client=client).session_id
    gc.collect()
    with pytest.raises(SessionNotFoundError):
        client.get_session(session_id)
