"""Host tools: functions on this machine that sandboxed code calls like plain functions.

A streamed call lists its tools; each call from the sandbox arrives as a `tool_call` event,
is answered here with the function's result, and Python in the sandbox goes on with it. The
function runs in this process, with whatever credentials it holds; the sandbox sees only its
name, its description and its arguments' schema.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_JSON_TYPES: dict[Any, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean",
    list: "array", tuple: "array", dict: "object", type(None): "null",
}


@dataclass(frozen=True)
class HostTool:
    """A tool the sandbox can call. `parameters` is a JSON Schema object; `function` gets
    the arguments as keyword arguments and returns a JSON value (anything else is sent as
    its `str()`); an exception it raises reaches the sandbox as `ToolError`."""

    name: str
    function: Callable[..., Any]
    description: str = ""
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    @classmethod
    def from_function(cls, function: Callable[..., Any], name: str | None = None) -> HostTool:
        """A tool from a function: its name, its docstring, and a schema from its signature
        (type hints give the JSON types; parameters without a default are required)."""
        return cls(
            name=name or function.__name__,
            function=function,
            description=inspect.getdoc(function) or "",
            parameters=_schema_of(function),
        )

    def definition(self) -> dict[str, Any]:
        """What the execute request's `tools` carries."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def answer(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Runs the function; the body of `tool-results` without its id."""
        try:
            result = self.function(**arguments)
        except Exception as e:  # noqa: BLE001 - every failure is the sandbox's ToolError
            return {"error": f"{type(e).__name__}: {e}"}
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError):
            result = str(result)
        return {"result": result}


@dataclass(frozen=True)
class ToolCallEvent:
    """A call the sandbox made to a host tool, as it was answered (yielded by `run_stream`)."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None
    """The error sent instead of a result, if any."""


ToolsArg = Mapping[str, Callable[..., Any] | HostTool] | Iterable[Callable[..., Any] | HostTool]
"""What `tools=` takes: {name: function or HostTool}, or a list of functions and HostTools."""


def host_tools(tools: ToolsArg | None) -> dict[str, HostTool]:
    """`tools=` as HostTools by name."""
    if not tools:
        return {}
    items = tools.items() if isinstance(tools, Mapping) else ((None, t) for t in tools)
    found: dict[str, HostTool] = {}
    for name, tool in items:
        if isinstance(tool, HostTool):
            made = tool if name is None or name == tool.name else HostTool(
                name, tool.function, tool.description, tool.parameters
            )
        elif callable(tool):
            made = HostTool.from_function(tool, name)
        else:
            raise TypeError(f"a tool must be a function or a HostTool, not {type(tool).__name__}")
        if made.name in found:
            raise ValueError(f"two tools are named {made.name!r}")
        found[made.name] = made
    return found


def _schema_of(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function)
    except (TypeError, ValueError, NameError):
        return {"type": "object", "properties": {}}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(param.name)
        origin = typing.get_origin(hint) or hint
        properties[param.name] = {"type": _JSON_TYPES[origin]} if origin in _JSON_TYPES else {}
        if param.default is param.empty:
            required.append(param.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema
