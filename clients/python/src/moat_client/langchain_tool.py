"""`MoatPythonTool`: a LangChain tool that runs the model's Python in Moat.

It takes the place of `PythonREPLTool`, which runs the model's code inside the host process.
The tool's input and output are the same kind of thing: code in, the text the model should
read out (what was printed, then the value of the last expression, or the traceback).
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Optional

from .client import DEFAULT_URL, MoatClient
from .errors import MoatError
from .results import RunResult, image_bytes, is_image
from .smolagents_executor import _delete_quietly
from .tools import HostTool, as_host_tool, host_tools, identifier

try:
    from langchain_core.tools import BaseTool, ToolException
    from pydantic import BaseModel, Field

    LANGCHAIN_AVAILABLE = True
except ImportError:
    LANGCHAIN_AVAILABLE = False

    class ToolException(Exception):  # type: ignore[no-redef]
        """Stands in for langchain_core's ToolException."""

    class BaseModel:  # type: ignore[no-redef]
        pass

    def Field(default: Any = None, **_: Any) -> Any:  # type: ignore[no-redef]  # noqa: N802
        return default

    class BaseTool:  # type: ignore[no-redef]
        """The part of LangChain's BaseTool an application calls: fields, run(), invoke()."""

        def __init__(self, **fields: Any) -> None:
            for key, value in fields.items():
                setattr(self, key, value)

        def run(self, tool_input: str | dict[str, Any], **_: Any) -> Any:
            if isinstance(tool_input, dict):
                return self._run(**tool_input)
            return self._run(tool_input)

        def invoke(self, input: str | dict[str, Any], config: Any = None, **_: Any) -> Any:
            return self.run(input)


DESCRIPTION = (
    "A Python shell in a sandbox. Use it to compute, parse data or check facts with code. "
    "Input is Python source. Variables, functions and imports persist between calls. "
    "The output is what the code prints, then the value of its last expression; "
    "on an exception, the traceback."
)


def langchain_host_tool(tool: Any) -> HostTool:
    """A LangChain tool (or a plain function, or a `HostTool`) as a host tool: its JSON schema
    from its `tool_call_schema` (the arguments the model fills in), called with
    `tool.invoke(arguments)` in this process. A name that is not a Python identifier is made
    one (`search-web` → `search_web`)."""
    if not hasattr(tool, "invoke") or not hasattr(tool, "name"):
        return as_host_tool(tool)
    try:
        schema = tool.tool_call_schema
        schema = dict(schema if isinstance(schema, dict) else schema.model_json_schema())
    except Exception:  # noqa: BLE001 - a tool without a pydantic schema
        schema = {"properties": dict(getattr(tool, "args", {}) or {})}
    parameters: dict[str, Any] = {"type": "object", "properties": schema.get("properties", {})}
    if schema.get("required"):
        parameters["required"] = list(schema["required"])
    if schema.get("$defs"):  # what the properties' "$ref"s point to
        parameters["$defs"] = schema["$defs"]
    return HostTool(identifier(tool.name), lambda **arguments: tool.invoke(arguments),
                    str(tool.description or ""), parameters)


def describe_tools(tools: dict[str, HostTool]) -> str:
    """The sentence the model reads about the functions its code may call."""
    lines = [f"- {t.name}({', '.join(t.parameters.get('properties', {}))}): "
             f"{t.description.splitlines()[0] if t.description else ''}" for t in tools.values()]
    return ("\nThe code may call these functions, which run outside the sandbox, like any "
            "Python function (keyword arguments; a failure raises ToolError):\n" + "\n".join(lines))


class PythonInputs(BaseModel):
    """The tool's single argument, named as in PythonREPLTool so prompts carry over."""

    query: str = Field(description="Python source code to run")


class MoatPythonTool(BaseTool):
    """Runs Python in a Moat session; replaces LangChain's `PythonREPLTool`.

    The session is created at the first call, once even when calls start together (`batch`,
    `abatch`, parallel tool calls), and deleted by `close()`, the end of a `with` block, or
    garbage collection. Pass `session_id` to use a session you manage yourself.

    Fields besides LangChain's: `client` (a MoatClient), `session_id`, `packages` (loaded
    before every call; only the first load costs time), `mode` ("persistent" or
    "ephemeral"), `timeout_ms`, and `sanitize_input` (strip Markdown code fences).

    `tools`: LangChain tools (or plain functions, or `HostTool`s) the code may call like
    Python functions (see `langchain_host_tool`); they run here, in this process, and the
    tool's description lists them for the model. A tool's exception (`ToolException`
    included) is a `ToolError` in the sandbox, which the model reads in the output.
    """

    name: str = "moat_python"
    description: str = DESCRIPTION
    args_schema: type[BaseModel] = PythonInputs
    client: Any = None
    session_id: Optional[str] = None
    packages: list[str] = []
    mode: str = "persistent"
    timeout_ms: Optional[int] = None
    sanitize_input: bool = True
    _finalizers: Any = None  # one per session this tool created
    _lock: Any = None  # makes concurrent first calls share one session
    _host_tools: Any = None  # `tools=`, as host tools by name

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        packages: Sequence[str] = (),
        tools: Sequence[Any] = (),
        **fields: Any,
    ) -> None:
        fields.setdefault("client", MoatClient(url, token))
        made = host_tools([langchain_host_tool(t) for t in tools])
        if made:
            fields["description"] = fields.get("description", DESCRIPTION) + describe_tools(made)
        super().__init__(packages=list(packages), **fields)
        self._finalizers = []
        self._lock = threading.Lock()
        self._host_tools = made

    def _run(self, query: str, run_manager: Any = None, **_: Any) -> str:
        """Runs `query` and returns the text the model reads."""
        code = _strip_fences(query) if self.sanitize_input else query
        try:
            answer = self.client.run(
                code, self.packages, session_id=self._session(), timeout_ms=self.timeout_ms,
                tools=self._host_tools or None,
            )
        except MoatError as e:
            # ToolException, so `handle_tool_error=True` can show the model what went wrong.
            raise ToolException(str(e)) from e
        return format_for_model(answer)

    def _session(self) -> str:
        session_id = self.session_id
        if session_id is not None:
            return session_id
        with self._lock:
            if self.session_id is None:
                created = self.client.create_session(self.mode).id
                self._finalizers.append(
                    weakref.finalize(self, _delete_quietly, self.client, created)
                )
                self.session_id = created
            return self.session_id

    def close(self) -> None:
        """Deletes every session this tool created (not one passed in); idempotent."""
        with self._lock:
            mine = [f for f in self._finalizers if f.alive]
            if mine:
                self.session_id = None
            for finalizer in mine:
                finalizer()
            self._finalizers.clear()

    def __enter__(self) -> MoatPythonTool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_for_model(answer: RunResult) -> str:
    """What the model should read: printed output, then the result or the traceback.

    A string result is shown as it is (a DataFrame's repr reads as a table, not as one
    quoted line); other values as JSON; an image as a short note, since this tool's
    output is text.
    """
    parts = [answer.stdout, answer.stderr]
    if answer.error is not None:
        # The server already puts what was printed before the error into the traceback.
        parts = [answer.stderr, str(answer.error)]
    elif is_image(answer.result):
        parts.append(f"<image: PNG, {len(image_bytes(answer.result))} bytes>")
    elif isinstance(answer.result, str):
        parts.append(answer.result)
    elif answer.result is not None:
        parts.append(json.dumps(answer.result, ensure_ascii=False))
    return "\n".join(p.rstrip("\n") for p in parts if p)


_FENCE = re.compile(r"^\s*```(?:python|py)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)


def _strip_fences(query: str) -> str:
    """Models often wrap code in a Markdown fence; Python would reject the backticks."""
    match = _FENCE.match(query)
    return match.group(1) if match else query
