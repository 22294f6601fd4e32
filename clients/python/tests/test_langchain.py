"""MoatPythonTool inside LangChain's own tool machinery. Skipped when langchain_core is absent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as e:
    # The real cause: langchain-core itself, or one of its dependencies.
    pytest.skip(f"langchain-core cannot be imported: {e} (pip install langchain-core)", allow_module_level=True)

from conftest import Server  # noqa: E402
from moat_client import MoatClient  # noqa: E402
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


def sessions_now(server: Server) -> set[str]:
    return {s.id for s in MoatClient(server.url, server.token).list_sessions()}


def test_a_batch_of_first_calls_shares_one_session_and_close_deletes_it(server: Server) -> None:
    before = sessions_now(server)
    tool = MoatPythonTool(server.url, server.token)
    answers = tool.batch([f"{i} * 2" for i in range(6)], config={"max_concurrency": 6})
    assert answers == [str(i * 2) for i in range(6)]
    made = sessions_now(server) - before
    assert made == {tool.session_id}
    tool.close()
    assert sessions_now(server) - before == set()


def test_parallel_async_first_calls_share_one_session(server: Server) -> None:
    import asyncio

    before = sessions_now(server)
    with MoatPythonTool(server.url, server.token) as tool:

        async def calls() -> list[str]:
            return await asyncio.gather(*(tool.ainvoke(f"n{i} = {i}\nn{i}") for i in range(5)))

        assert asyncio.run(calls()) == [str(i) for i in range(5)]
        assert len(sessions_now(server) - before) == 1
        assert tool.invoke("n0 + n4") == "4", "every call ran in the same session"
    assert sessions_now(server) - before == set(), "the with block deleted the session"


def test_close_deletes_every_session_the_tool_made(server: Server) -> None:
    before = sessions_now(server)
    tool = MoatPythonTool(server.url, server.token)
    tool.invoke("1")
    tool.close()
    tool.invoke("2")  # a call after close gets a new session
    assert len(sessions_now(server) - before) == 1
    tool.close()
    assert sessions_now(server) - before == set()


def test_langchain_tools_are_host_tools_the_code_calls(server: Server) -> None:
    from langchain_core.tools import tool as lc_tool

    secret = "db-password-5e6f7a"

    @lc_tool
    def lookup_order(order_id: int) -> dict:
        """Looks an order up in the shop's database."""
        assert secret  # the connection string stays in this process
        if order_id == 404:
            raise ValueError("no such order")
        return {"id": order_id, "total": 12.5 * order_id}

    with MoatPythonTool(server.url, server.token, tools=[lookup_order]) as moat:
        assert "lookup_order(order_id): Looks an order up" in moat.description
        out = moat.invoke({"query": "orders = [lookup_order(order_id=i) for i in (1, 2)]\n"
                                    "sum(o['total'] for o in orders)"})
        assert out == "37.5"
        failed = moat.invoke({"query": "try:\n    lookup_order(404)\nexcept ToolError as e:\n"
                                       "    print(e)\nimport os\n'db-password' in repr(dict(os.environ)) + repr(globals())"})
        assert "no such order" in failed and failed.endswith("false"), failed


def test_a_tool_named_with_a_dash_and_a_nested_schema_is_callable_by_a_python_name(
    server: Server,
) -> None:
    from langchain_core.tools import StructuredTool
    from pydantic import BaseModel

    class Address(BaseModel):
        city: str
        zip: str

    class ShipInputs(BaseModel):
        weight_kg: float
        to: Address

    def ship(weight_kg: float, to: Address) -> str:
        return f"{weight_kg} kg to {to.city} ({to.zip})"

    shipping = StructuredTool.from_function(
        ship, name="quote-shipping", description="Quotes a parcel.", args_schema=ShipInputs
    )
    with MoatPythonTool(server.url, server.token, tools=[shipping]) as moat:
        assert "quote_shipping(weight_kg, to): Quotes a parcel." in moat.description
        out = moat.invoke({"query": "quote_shipping(2.5, {'city': 'Lyon', 'zip': '69001'})"})
        assert out == "2.5 kg to Lyon (69001)", out
        help_text = moat.invoke({"query": "quote_shipping.__doc__"})
        assert "Quotes a parcel." in help_text and "weight_kg (number)" in help_text, help_text
