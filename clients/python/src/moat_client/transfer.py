"""Files and live output: the parts of Moat's API that are not one JSON answer.

Kept apart from `client.py` so that `MoatClient` only gains thin methods: raw bytes in and
out of a session's working directory, and an execute call read as Server-Sent Events.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import MoatConnectionError, MoatHTTPError, MoatServerError, error_for_status
from .results import RunResult
from .tools import HostTool, ToolCallEvent

if TYPE_CHECKING:
    from .client import MoatClient


@dataclass(frozen=True)
class OutputEvent:
    """Output the code printed, as the server streamed it (`stream` is stdout or stderr)."""

    stream: str
    text: str


@dataclass(frozen=True)
class FileEntry:
    """One file of a session's working directory."""

    path: str
    size: int
    modified: str
    """ISO 8601."""


def session_path(session_id: str) -> str:
    # quote() so an id can never walk to another route ("../health", "a/reset").
    return "/v1/sessions/" + quote(session_id, safe="")


def files_path(session_id: str | None, path: str | None = None) -> str:
    """`/files[/path]` for the default session, `/v1/sessions/{id}/files[/path]` otherwise.
    Each segment is percent-encoded, so a name can never walk to another route."""
    base = "/files" if session_id is None else session_path(session_id) + "/files"
    if path is None:
        return base
    parts = path.split("/")
    # URLs resolve `..` before the server sees them, so these are refused here.
    if parts[0] == "":
        raise ValueError(f"absolute paths are refused: {path!r} (name a file in the working directory)")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"'.', '..' and empty segments are refused: {path!r}")
    return base + "/" + "/".join(quote(part, safe="") for part in path.split("/"))


def send_raw(
    client: MoatClient, method: str, path: str, data: bytes | None = None, *, accept: str = "*/*",
    timeout: float | None = None,
) -> Any:
    """Sends one request with a raw body; returns the open response (the caller closes it)."""
    from .client import USER_AGENT, _http_error

    headers = {"Accept": accept, "User-Agent": USER_AGENT}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    if data is not None:
        headers["Content-Type"] = "application/octet-stream"
    request = urllib.request.Request(client.url + path, data=data, method=method, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout or client.timeout)
    except urllib.error.HTTPError as e:
        raise _http_error(e.code, e.read()) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise MoatConnectionError(f"{method} {client.url}{path} failed: {reason}") from e


def run_request(
    client: MoatClient, code: str, packages: Sequence[str], session_id: str | None,
    timeout_ms: int | None, authorized_imports: Sequence[str] | None,
) -> tuple[str, dict[str, Any], float]:
    """The path, JSON body and socket timeout of an execute call, plain or streamed: the
    socket waits for the call's own time limit plus a minute when it is longer than usual."""
    body: dict[str, Any] = {"code": code, "packages": list(packages)}
    if timeout_ms is not None:
        body["timeoutMs"] = timeout_ms
    if authorized_imports is not None:
        body["authorizedImports"] = list(authorized_imports)
    wait = client.timeout if timeout_ms is None else max(client.timeout, timeout_ms / 1000 + 60)
    path = "/" if session_id is None else session_path(session_id)
    return path, body, wait


def stream_run(
    client: MoatClient, code: str, packages: Sequence[str], session_id: str | None,
    timeout_ms: int | None, authorized_imports: Sequence[str] | None = None,
    tools: dict[str, HostTool] | None = None,
) -> Iterator[OutputEvent | ToolCallEvent | RunResult]:
    """Runs code with `Accept: text/event-stream`: yields an `OutputEvent` per batch the code
    prints, then the `RunResult` (the same answer `run` gives). With `tools`, each call the
    code makes to one is answered here (the code waits meanwhile) and yielded as a
    `ToolCallEvent`. Closing the iterator early does not stop the call: it finishes in its
    session (a tool call waiting then gets a ToolError)."""
    path, body, wait = run_request(client, code, packages, session_id, timeout_ms,
                                   authorized_imports)
    if tools:
        body["tools"] = [tool.definition() for tool in tools.values()]
    results_path = ("" if path == "/" else path) + "/tool-results"
    data = json.dumps(body).encode("utf-8")
    with send_raw(client, "POST", path, data, accept="text/event-stream", timeout=wait) as response:
        event, lines = "message", []
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith(":"):
                continue  # a keep-alive comment
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            elif line == "" and lines:
                payload = "\n".join(lines)
                if event in ("stdout", "stderr"):
                    yield OutputEvent(event, json.loads(payload))
                elif event == "tool_call":
                    yield _answer_tool(client, results_path, json.loads(payload), tools or {})
                elif event == "result":
                    yield RunResult.from_json(json.loads(payload))
                    return
                elif event == "error":
                    error = json.loads(payload).get("error", {})
                    raise error_for_status(503, str(error.get("name")), str(error.get("message")), payload)
                event, lines = "message", []
    raise MoatServerError(200, "InvalidResponse", "the event stream ended without a result")


def _answer_tool(
    client: MoatClient, path: str, call: dict[str, Any], tools: dict[str, HostTool]
) -> ToolCallEvent:
    """Runs the tool the sandbox called and posts its answer; the sandbox's code waits."""
    tool = tools.get(call["name"])
    arguments = call.get("arguments") or {}
    answer = tool.answer(arguments) if tool else {"error": f"no tool {call['name']!r} here"}
    try:
        client._request("POST", path, {"id": call["id"], **answer})
    except MoatHTTPError as e:
        # 404: the sandbox stopped waiting (limits.toolCallMs, its time limit); 413 for
        # limits.resultBytes: it got a ToolError saying so. Either way the call goes on.
        refused = {"error": f"the result was refused: HTTP {e.status} {e.name}: {e.message}"}
        if e.status in (400, 413) and "result" in answer:
            # It may still wait (a 413 of limits.bodyBytes comes before the result's own cap
            # is checked): tell it why rather than leave it to limits.toolCallMs. Where it
            # was told already, this is a 404, ignored.
            try:
                client._request("POST", path, {"id": call["id"], **refused})
            except MoatHTTPError:
                pass
        answer = refused
    return ToolCallEvent(call["id"], call["name"], arguments, answer.get("error"))


def list_files(client: MoatClient, session_id: str | None) -> list[FileEntry]:
    body = client._request("GET", files_path(session_id))
    return [FileEntry(f["path"], int(f["size"]), f["modified"]) for f in body.get("files", [])]
