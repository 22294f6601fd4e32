"""MoatPythonTool against a real Moat, called the way an application calls a LangChain tool.

These run with or without LangChain installed (`invoke` exists on both bases).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import SWATCH_CODE, Server
from moat_client import MoatClient, SessionNotFoundError
from moat_client.langchain_tool import MoatPythonTool, ToolException


@pytest.fixture
def tool(server: Server) -> Iterator[MoatPythonTool]:
    tool = MoatPythonTool(server.url, server.token)
    yield tool
    tool.close()


def test_the_model_reads_what_was_printed_then_the_value(tool: MoatPythonTool) -> None:
    assert tool.invoke("print('hi')\n1 + 1") == "hi\n2"
    assert tool.invoke({"query": "print('only printed')"}) == "only printed"


def test_variables_persist_between_calls(tool: MoatPythonTool) -> None:
    tool.invoke("items = ['a', 'b']")
    assert tool.invoke("len(items)") == "2"


def test_a_string_value_reads_as_text_and_other_values_as_json(tool: MoatPythonTool) -> None:
    assert tool.invoke("'line one\\nline two'") == "line one\nline two"
    assert tool.invoke("{'a': [1, None, True], 'é': 'ü'}") == '{"a": [1, null, true], "é": "ü"}'


def test_an_exception_reads_as_its_traceback_not_as_a_failure(tool: MoatPythonTool) -> None:
    text = tool.invoke("print('partial')\nint('x')")
    assert "ValueError: invalid literal for int() with base 10: 'x'" in text
    assert "partial" in text


def test_markdown_fences_around_the_code_are_removed(tool: MoatPythonTool) -> None:
    assert tool.invoke("```python\nprint(3 * 3)\n```") == "9"


def test_an_image_is_described_since_the_output_is_text(tool: MoatPythonTool) -> None:
    text = tool.invoke(SWATCH_CODE + "\nSwatch(1, 1, (0, 0, 0))")
    assert text.startswith("<image: PNG, ") and text.endswith(" bytes>")


def test_close_deletes_the_session_the_tool_created(server: Server) -> None:
    client = MoatClient(server.url, server.token)
    tool = MoatPythonTool(client=client)
    tool.invoke("1")
    session_id = tool.session_id
    assert session_id is not None
    tool.close()
    tool.close()
    with pytest.raises(SessionNotFoundError):
        client.get_session(session_id)


def test_a_session_passed_in_is_used_and_left_alone(server: Server) -> None:
    client = MoatClient(server.url, server.token)
    with client.session() as s:
        s.run("shared = 'from the app'")
        tool = MoatPythonTool(client=client, session_id=s.id)
        assert tool.invoke("shared") == "from the app"
        tool.close()
        assert client.get_session(s.id).id == s.id


def test_an_http_failure_raises_a_tool_exception(server: Server) -> None:
    tool = MoatPythonTool(server.url, server.token, session_id="no-such-session")
    with pytest.raises(ToolException, match="404"):
        tool.invoke("1")
