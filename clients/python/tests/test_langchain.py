"""MoatPythonTool inside LangChain's own tool machinery. Skipped when langchain_core is absent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip(
    "langchain_core", reason="langchain-core is not installed (pip install langchain-core to run these)"
)
from langchain_core.messages import ToolMessage  # noqa: E402
from langchain_core.tools import BaseTool  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402

from conftest import Server  # noqa: E402
from moat_client.langchain_tool import MoatPythonTool  # noqa: E402


@pytest.fixture
def tool(server: Server) -> Iterator[MoatPythonTool]:
    tool = MoatPythonTool(server.url, server.token)
    yield tool
    tool.close()


def test_the_tool_is_a_langchain_base_tool_with_one_code_argument(tool: MoatPythonTool) -> None:
    assert isinstance(tool, BaseTool)
    assert list(tool.args) == ["query"]
    schema = convert_to_openai_tool(tool)["function"]
    assert schema["name"] == "moat_python"
    assert list(schema["parameters"]["properties"]) == ["query"]


def test_a_model_tool_call_gets_a_tool_message_back(tool: MoatPythonTool) -> None:
    call = {"name": "moat_python", "args": {"query": "print(2 ** 10)"}, "id": "call-1", "type": "tool_call"}
    message = tool.invoke(call)
    assert isinstance(message, ToolMessage)
    assert message.content == "1024" and message.tool_call_id == "call-1"


def test_handle_tool_error_shows_an_http_failure_to_the_model(server: Server) -> None:
    tool = MoatPythonTool(server.url, server.token, session_id="no-such-session", handle_tool_error=True)
    assert "404" in tool.invoke("1")


def test_the_tool_runs_asynchronously_too(tool: MoatPythonTool) -> None:
    import asyncio

    assert asyncio.run(tool.ainvoke("sum(range(10))")) == "45"
