"""Moat as an MCP server, through the Python `mcp` package's clients (what pydantic-ai,
LangChain's MCP adapters and smolagents use): over Streamable HTTP at /mcp and over stdio.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import DENO, REPO_ROOT, Moat

pytestmark = pytest.mark.anyio

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@asynccontextmanager
async def http_session(moat: Moat) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {moat.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(f"{moat.url}/mcp", http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def stdio_session(moat: Moat, **env: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=DENO[0], args=[*DENO[1:], "task", "mcp"], env=moat.stdio_env(**env), cwd=REPO_ROOT,
    )
    with open("/dev/null", "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def run(session: ClientSession, code: str, **extra) -> types.CallToolResult:
    return await session.call_tool("run_python_code", {"python_code": code, **extra})


def text(result: types.CallToolResult) -> str:
    assert isinstance(result.content[0], types.TextContent)
    return result.content[0].text


def sessions(moat: Moat) -> list[str]:
    req = urllib.request.Request(f"{moat.url}/v1/sessions",
                                 headers={"Authorization": f"Bearer {moat.token}"})
    with urllib.request.urlopen(req) as res:
        return [s["id"] for s in json.load(res)["sessions"]]


async def check_everything(session: ClientSession) -> None:
    """The steps a host takes over either transport, in one session."""
    tools = (await session.list_tools()).tools
    assert [t.name for t in tools] == ["run_python_code", "reset_session"]
    schema = tools[0].input_schema
    assert schema["required"] == ["python_code"]
    assert schema["properties"]["global_variables"] == {
        "type": "object", "additionalProperties": {}, "default": {},
        "description": "Map of global variables in context when the code is executed",
    }
    assert tools[0].description.startswith(
        "Tool to execute Python code and return stdout, stderr, and return value.")

    assert text(await run(session, "x = 4\nprint(f'{x=}')\nx")) == (
        "<status>success</status>\n<output>\nx=4\n</output>\n<return_value>\n4\n</return_value>")
    assert text(await run(session, "x + 1")) == (
        "<status>success</status>\n<return_value>\n5\n</return_value>")

    assert text(await run(session, "print(unknown)")) == """\
<status>run-error</status>
<error>
Traceback (most recent call last):
  File "main.py", line 1, in <module>
    print(unknown)
          ^^^^^^^
NameError: name 'unknown' is not defined

</error>"""

    refused = text(await run(session, "ran = 1", packages=["pandas"]))
    assert refused.startswith("<status>install-error</status>\n<error>\npackage 'pandas' was not loaded")

    picture = await run(session, f"""import base64
class Picture:
    def _repr_png_(self):
        return base64.b64decode("{PNG}")
Picture()""")
    image = picture.content[1]
    assert isinstance(image, types.ImageContent)
    assert (image.data, image.mime_type) == (PNG, "image/png")

    slow = text(await run(session, "while True: pass"))
    assert slow.startswith("<status>run-error</status>") and "TimeoutError" in slow
    after = text(await run(session, "x"))
    assert "<return_value>\n4\n" in after, f"after {slow!r}"

    bomb = text(await run(session, "b = bytearray(300 * 1024 * 1024)"))
    assert bomb.startswith("<status>run-error</status>") and "MemoryError" in bomb
    assert "<return_value>\n4\n" in text(await run(session, "x"))

    escape = text(await run(session, "import js\njs.Deno.readTextFileSync('/etc/passwd')"))
    assert escape.startswith("<status>run-error</status>") and "root:x:0:0" not in escape

    with pytest.raises(MCPError) as bad:
        await session.call_tool("run_python_code", {"python_code": 42})
    assert bad.value.code == -32602 and "'python_code'" in str(bad.value)

    await session.call_tool("reset_session", {})
    assert "NameError" in text(await run(session, "x"))


async def test_a_host_uses_moat_over_streamable_http(moat: Moat) -> None:
    async with http_session(moat) as session:
        await check_everything(session)


async def test_two_http_sessions_cannot_see_each_others_variables(moat: Moat) -> None:
    async with http_session(moat) as one, http_session(moat) as two:
        await run(one, "secret = 'mine'")
        assert "NameError: name 'secret'" in text(await run(two, "secret"))


async def test_ending_an_http_session_frees_its_interpreter(moat: Moat) -> None:
    before = set(sessions(moat))
    async with http_session(moat) as session:
        await run(session, "1")
        created = set(sessions(moat)) - before
        assert len(created) == 1
    # The client DELETEs the MCP session on exit; its Moat session goes with it.
    assert not created & set(sessions(moat))


async def test_no_token_or_a_wrong_one_is_401(moat: Moat) -> None:
    async with httpx2.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            res = await http.post(f"{moat.url}/mcp", content="{}", headers=headers)
            assert res.status_code == 401


async def test_a_host_uses_moat_over_stdio(moat: Moat) -> None:
    async with stdio_session(moat) as session:
        await check_everything(session)


async def test_two_stdio_servers_cannot_see_each_others_variables(moat: Moat) -> None:
    async with stdio_session(moat) as one, stdio_session(moat, MOAT_MCP_RETURN_MODE="json") as two:
        await run(one, "secret = 'mine'")
        answer = json.loads(text(await run(two, "secret")))
        assert answer["status"] == "run-error" and "NameError" in answer["error"]
