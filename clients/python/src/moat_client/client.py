"""`MoatClient`: Moat's HTTP API, with the standard library only.

Standard library only because this client is installed next to agent frameworks whose
dependency trees are already large; it must never be the package that breaks a resolve.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import MoatConnectionError, MoatServerError, error_for_status
from .results import RunResult, SessionInfo
from .tools import ToolCallEvent, ToolsArg, host_tools
from .transfer import (
    FileEntry,
    OutputEvent,
    files_path,
    list_files,
    run_request,
    send_raw,
    session_path,
    stream_run,
)

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where `deno task start` listens when MOAT_HOST and MOAT_PORT are unset."""

USER_AGENT = "moat-client-python/0.1"


class MoatClient:
    """Talks to one Moat server.

    Args:
        url: the server's base URL; a path prefix (a reverse proxy's) is kept.
        token: the bearer token; defaults to the MOAT_TOKEN environment variable, as the
            server reads its own from there.
        timeout: seconds to wait for any answer. A run waits longer when its `timeout_ms`
            asks for more, so the socket never gives up before the server does.
    """

    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, *, timeout: float = 300.0
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("MOAT_TOKEN")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"MoatClient({self.url!r})"  # never the token: reprs end up in logs

    # -- code --------------------------------------------------------------------------

    def run(
        self,
        code: str,
        packages: Sequence[str] = (),
        *,
        session_id: str | None = None,
        timeout_ms: int | None = None,
        authorized_imports: Sequence[str] | None = None,
        tools: ToolsArg | None = None,
    ) -> RunResult:
        """Runs `code` in a session (the default session `/` when `session_id` is None).

        A Python exception is not raised here: it is in `RunResult.error`, because it is
        an answer for the model. Only HTTP-level failures raise (see `moat_client.errors`).
        `packages` are import or distribution names the server loads before running.
        `authorized_imports` (module names, `pkg.*` patterns) makes the sandbox refuse any
        other import of this code, beyond smolagents' standard modules; `["*"]` lifts a
        session's rule for this call; None keeps the session's. `tools` (see `run_stream`)
        makes this a streamed call whose tool calls are answered here.
        """
        if tools:
            for event in self.run_stream(
                code, packages, session_id=session_id, timeout_ms=timeout_ms,
                authorized_imports=authorized_imports, tools=tools,
            ):
                if isinstance(event, RunResult):
                    return event
        path, body, wait = run_request(self, code, packages, session_id, timeout_ms,
                                       authorized_imports)
        return RunResult.from_json(self._request("POST", path, body, timeout=wait))

    def run_stream(
        self,
        code: str,
        packages: Sequence[str] = (),
        *,
        session_id: str | None = None,
        timeout_ms: int | None = None,
        authorized_imports: Sequence[str] | None = None,
        tools: ToolsArg | None = None,
    ) -> Iterator[OutputEvent | ToolCallEvent | RunResult]:
        """Like `run`, but yields `OutputEvent`s as the code prints, then the `RunResult`.

        `tools`: functions on this machine the code may call like plain functions, as
        `{"name": function}` or a list of functions, `HostTool`s or definition dicts
        `{"name", "description", "parameters", "function"}` (see `moat_client.tools`; a
        function's schema comes from its signature, type hints and docstring). Each call runs
        the function here, with the arguments as keyword arguments, while the code waits; it
        is yielded as a `ToolCallEvent` once answered. The result reaches the code as a Python
        value (what JSON cannot hold is converted, see `moat_client.tools.to_json`); an
        exception the function raises is a `ToolError("Type: message")` there. The sandbox
        never sees the function, only its name, description and schema. A name that cannot
        be a Python function's raises ValueError here, before anything is sent.
        """
        return stream_run(self, code, packages, session_id, timeout_ms, authorized_imports,
                          host_tools(tools))

    # -- files -------------------------------------------------------------------------

    def upload(self, path: str, data: bytes | str, *, session_id: str | None = None) -> FileEntry:
        """Writes a file into the session's working directory (Python's cwd); str is UTF-8."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        with send_raw(self, "PUT", files_path(session_id, path), raw, accept="application/json") as r:
            file = json.loads(r.read())["file"]
        return FileEntry(file["path"], int(file["size"]), file["modified"])

    def download(self, path: str, *, session_id: str | None = None) -> bytes:
        """The bytes of a file in the session's working directory."""
        with send_raw(self, "GET", files_path(session_id, path)) as response:
            return response.read()

    def files(self, *, session_id: str | None = None) -> list[FileEntry]:
        """The files of the session's working directory, with sizes and modification times."""
        return list_files(self, session_id)

    def delete_file(self, path: str, *, session_id: str | None = None) -> None:
        """Deletes a file from the session's working directory."""
        self._request("DELETE", files_path(session_id, path))

    # -- sessions ----------------------------------------------------------------------

    def create_session(
        self,
        mode: str = "persistent",
        *,
        authorized_imports: Sequence[str] | None = None,
        **options: Any,
    ) -> SessionInfo:
        """Creates a session. `mode` is "persistent" (state kept between calls) or
        "ephemeral" (a clean interpreter on every call); `authorized_imports` is the import
        rule of every call (see `run`); `options` are sent as they are."""
        body: dict[str, Any] = {"mode": mode, **options}
        if authorized_imports is not None:
            body["authorizedImports"] = list(authorized_imports)
        return SessionInfo.from_json(self._request("POST", "/v1/sessions", body))

    def list_sessions(self) -> list[SessionInfo]:
        """The sessions the server holds now."""
        body = self._request("GET", "/v1/sessions")
        return [SessionInfo.from_json(item) for item in body.get("sessions", [])]

    def get_session(self, session_id: str) -> SessionInfo:
        """One session's details; raises `SessionNotFoundError` when it is gone."""
        return SessionInfo.from_json(self._request("GET", session_path(session_id)))

    def reset_session(self, session_id: str) -> None:
        """Forgets the session's variables and imports; the session id stays valid."""
        self._request("POST", session_path(session_id) + "/reset")

    def delete_session(self, session_id: str) -> None:
        """Stops the session's interpreter and frees its memory on the server."""
        self._request("DELETE", session_path(session_id))

    def session(
        self, mode: str = "persistent", *, authorized_imports: Sequence[str] | None = None,
        **options: Any,
    ) -> MoatSession:
        """Creates a session and returns a handle that deletes it on `with` exit."""
        return MoatSession(self, self.create_session(mode, authorized_imports=authorized_imports, **options))

    # -- server ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The server's health document (no token needed); raises when it is not up."""
        return self._request("GET", "/health")

    # -- transport ---------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Sends one request and returns the decoded JSON body (None when empty)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as e:
            raise _http_error(e.code, e.read()) from None
        except (urllib.error.URLError, OSError) as e:  # refused, reset, timed out
            reason = getattr(e, "reason", e)
            raise MoatConnectionError(f"{method} {self.url}{path} failed: {reason}") from e
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise MoatServerError(status, "InvalidResponse", _preview(raw)) from None


class MoatSession:
    """A session created by `MoatClient.session()`; `with` deletes it at the end."""

    def __init__(self, client: MoatClient, info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self.id = info.id

    def run(
        self,
        code: str,
        packages: Sequence[str] = (),
        *,
        timeout_ms: int | None = None,
        authorized_imports: Sequence[str] | None = None,
        tools: ToolsArg | None = None,
    ) -> RunResult:
        return self.client.run(
            code, packages, session_id=self.id, timeout_ms=timeout_ms,
            authorized_imports=authorized_imports, tools=tools,
        )

    def run_stream(
        self, code: str, packages: Sequence[str] = (), *, timeout_ms: int | None = None,
        authorized_imports: Sequence[str] | None = None, tools: ToolsArg | None = None,
    ) -> Iterator[OutputEvent | ToolCallEvent | RunResult]:
        return self.client.run_stream(
            code, packages, session_id=self.id, timeout_ms=timeout_ms,
            authorized_imports=authorized_imports, tools=tools,
        )

    def upload(self, path: str, data: bytes | str) -> FileEntry:
        return self.client.upload(path, data, session_id=self.id)

    def download(self, path: str) -> bytes:
        return self.client.download(path, session_id=self.id)

    def files(self) -> list[FileEntry]:
        return self.client.files(session_id=self.id)

    def delete_file(self, path: str) -> None:
        self.client.delete_file(path, session_id=self.id)

    def reset(self) -> None:
        self.client.reset_session(self.id)

    def delete(self) -> None:
        self.client.delete_session(self.id)

    def __enter__(self) -> MoatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


def _http_error(status: int, raw: bytes) -> Exception:
    """Reads the protocol's `{"error": {"name", "message"}}`, or keeps the raw text."""
    try:
        body = json.loads(raw)
        error = body["error"]
        return error_for_status(status, str(error["name"]), str(error["message"]), body)
    except (ValueError, KeyError, TypeError):
        return error_for_status(status, f"HTTP{status}", _preview(raw), raw)


def _preview(raw: bytes, limit: int = 2000) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"
