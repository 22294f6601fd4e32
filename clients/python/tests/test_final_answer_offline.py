"""smolagents' final answer on a Moat that cannot load numpy or Pillow (offline, no mirror).

smolagents' final_answer tool, as patched for remote executors, uses numpy and PIL only for
arrays and images, inside `try/except ImportError`; but smolagents hoists those imports to the
top of the tool definitions and lists numpy and pillow in every call. These run with or without
smolagents: with it, its own `send_tools` sends the tool; without it, the exact code it sends
(final_answer_tools.txt, captured from smolagents 1.27.0.dev0, commit e3a5b899) is replayed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Server
from moat_client import MoatClient
from moat_client.smolagents_executor import (
    SMOLAGENTS_AVAILABLE,
    AgentError,
    MoatExecutor,
    RemotePythonExecutor,
    optional_tool_imports,
)

FINAL_ANSWER_TOOLS = (Path(__file__).parent / "final_answer_tools.txt").read_text()
"""What smolagents' RemotePythonExecutor.send_tools runs for its final_answer tool alone."""


def send_final_answer_tool(ex: MoatExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends smolagents' final_answer tool through the executor, as CodeAgent does."""
    if SMOLAGENTS_AVAILABLE:
        from smolagents.default_tools import FinalAnswerTool

        ex.send_tools({"final_answer": FinalAnswerTool()})
        return

    def replay(self: MoatExecutor, tools: dict) -> None:
        # smolagents' send_tools: the tool's requirements (PIL mapped to pillow), then its code.
        self.installed_packages += self.install_packages(["numpy", "pillow"])
        self.run_code_raise_errors(FINAL_ANSWER_TOOLS)

    monkeypatch.setattr(RemotePythonExecutor, "send_tools", replay)
    ex.send_tools({"final_answer": object()})


@pytest.fixture
def offline_executor(offline_server: Server) -> Iterator[MoatExecutor]:
    with MoatExecutor(offline_server.url, offline_server.token) as ex:
        yield ex


def test_the_tool_definitions_as_smolagents_sends_them_fail_where_numpy_and_pil_are_missing(
    offline_server: Server,
) -> None:
    """Why the executor changes them: unchanged, the agent could not even start."""
    with MoatClient(offline_server.url, offline_server.token).session("ephemeral") as s:
        answer = s.run(FINAL_ANSWER_TOOLS, ["numpy", "pillow"])
    assert answer.error is not None
    assert answer.error.exception_type == "ModuleNotFoundError"
    assert "was not loaded" in answer.error.exception_value


def test_the_final_answer_works_where_numpy_and_pillow_cannot_be_had(
    offline_executor: MoatExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_final_answer_tool(offline_executor, monkeypatch)
    # Not listed any more: later calls neither retry them nor print why into the model's logs.
    assert offline_executor.installed_packages == []
    out = offline_executor("print('done')\nfinal_answer({'answer': 42, 'pair': (1, 2)})")
    assert out.is_final_answer
    assert out.output == {"answer": 42, "pair": (1, 2)}
    assert out.logs == "done\n"
    # Code that does use them is told why they are missing.
    with pytest.raises(AgentError, match=r"numpy' was not loaded: could not be"):
        offline_executor("import numpy")


def test_numpy_and_pillow_stay_listed_and_importable_where_the_server_has_them(
    server: Server, numpy_and_pillow: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MoatExecutor(server.url, server.token) as ex:
        send_final_answer_tool(ex, monkeypatch)
        assert sorted(ex.installed_packages) == ["numpy", "pillow"]
        assert ex("import numpy, PIL.Image\nnumpy.__name__").output == "numpy"
        out = ex("final_answer(6 * 7)")
        assert (out.is_final_answer, out.output) == (True, 42)


def test_packages_the_program_asked_for_stay_listed_even_when_missing(
    offline_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MoatExecutor(offline_server.url, offline_server.token, additional_imports=["numpy"]) as ex:
        send_final_answer_tool(ex, monkeypatch)
        assert ex.installed_packages == ["numpy"]
        assert ex("final_answer('ok')").output == "ok"


def test_only_the_hoisted_numpy_and_pil_imports_become_optional() -> None:
    code = "import io\nimport numpy\nimport PIL\nimport numpyish\n    import numpy\n"
    assert optional_tool_imports(code) == (
        "import io\n"
        "try:\n    import numpy\nexcept ImportError:\n    pass\n"
        "try:\n    import PIL\nexcept ImportError:\n    pass\n"
        "import numpyish\n    import numpy\n"
    )
