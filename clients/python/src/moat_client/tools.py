"""Host tools: functions on this machine that sandboxed code calls like plain functions.

A streamed call lists its tools; each call from the sandbox arrives as a `tool_call` event,
is answered here with the function's result, and Python in the sandbox goes on with it. The
function runs in this process, with whatever credentials it holds; the sandbox sees only its
name, its description and its arguments' schema.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import inspect
import json
import keyword
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

MAX_NAME_LENGTH = 64
"""The longest tool name the server takes."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

_JSON_TYPES: dict[Any, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null",
    dict: "object", collections.abc.Mapping: "object", collections.abc.MutableMapping: "object",
}
_ARRAYS = frozenset({
    list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
    collections.abc.Iterable, collections.abc.Collection, collections.abc.Set,
    collections.abc.MutableSet,
})


@dataclass(frozen=True)
class HostTool:
    """A tool the sandbox can call.

    `name` must be a Python identifier (ASCII, not a keyword, not starting with `_`, at most
    64 characters): it is the function's name in the sandbox. `parameters` is a JSON Schema
    object (`properties`, optional `required`); the property order is the order of positional
    arguments. `function` gets the arguments as keyword arguments. Its result is sent as JSON;
    what JSON cannot hold is converted (see `to_json`). An exception it raises reaches the
    sandbox as `ToolError("Type: message")`.
    """

    name: str
    function: Callable[..., Any]
    description: str = ""
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def __post_init__(self) -> None:
        check_name(self.name)
        if not callable(self.function):
            raise TypeError(f"tool {self.name!r}: function must be callable, not "
                            f"{type(self.function).__name__}")
        if not isinstance(self.parameters, Mapping):
            raise TypeError(f"tool {self.name!r}: parameters must be a JSON Schema object (a dict)")

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], name: str | None = None,
        description: str | None = None,
    ) -> HostTool:
        """A tool from a function: its name, its docstring, and a schema from its signature.

        Type hints give the JSON types (`str`, `int`, `float`, `bool`, lists, dicts, `X | None`,
        `Literal[...]`, enums; `Annotated[X, "text"]` adds a description); the docstring's
        `Args:` section (Google style) or `:param name:` lines give the parameters'
        descriptions; parameters without a default are required.
        """
        doc = inspect.getdoc(function) or ""
        return cls(
            name=name or getattr(function, "__name__", ""),
            function=function,
            description=doc if description is None else description,
            parameters=schema_of(function),
        )

    def definition(self) -> dict[str, Any]:
        """What the execute request's `tools` carries."""
        return {"name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}

    def answer(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Runs the function; the body of `tool-results` without its id."""
        try:
            result = self.function(**arguments)
        except Exception as e:  # noqa: BLE001 - every failure is the sandbox's ToolError
            return {"error": f"{type(e).__name__}: {e}"}
        try:
            return {"result": to_json(result)}
        except ValueError as e:
            return {"error": f"the result of {self.name} cannot be sent as JSON: {e}"}


@dataclass(frozen=True)
class ToolCallEvent:
    """A call the sandbox made to a host tool, as it was answered (yielded by `run_stream`)."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None
    """The error sent instead of a result, if any (or why the answer was not taken)."""


ToolSpec = Callable[..., Any] | HostTool | Mapping[str, Any]
"""One tool: a function, a `HostTool`, or a definition `{"name", "description", "parameters",
"function"}` (only `function` is required; `name` defaults to the function's)."""

ToolsArg = Mapping[str, ToolSpec] | Iterable[ToolSpec]
"""What `tools=` takes: `{name: tool}` or a list of tools (see `ToolSpec`)."""


def host_tools(tools: ToolsArg | None) -> dict[str, HostTool]:
    """`tools=` as HostTools by name; raises ValueError or TypeError on a tool that cannot be
    sent, before anything is."""
    if not tools:
        return {}
    items = tools.items() if isinstance(tools, Mapping) else ((None, t) for t in tools)
    found: dict[str, HostTool] = {}
    for name, tool in items:
        made = as_host_tool(tool, name)
        if made.name in found:
            raise ValueError(f"two tools are named {made.name!r}")
        found[made.name] = made
    return found


def as_host_tool(tool: ToolSpec, name: str | None = None) -> HostTool:
    """One `ToolSpec` as a HostTool, renamed to `name` when given."""
    if isinstance(tool, HostTool):
        return tool if name is None or name == tool.name else dataclasses.replace(tool, name=name)
    if isinstance(tool, Mapping):
        unknown = set(tool) - {"name", "description", "parameters", "function"}
        if unknown or "function" not in tool:
            raise TypeError("a tool definition is a dict with 'function' and optionally 'name', "
                            f"'description', 'parameters'; got keys {sorted(tool)}")
        made = HostTool.from_function(tool["function"], name or tool.get("name"),
                                      tool.get("description"))
        if "parameters" in tool:
            made = dataclasses.replace(made, parameters=dict(tool["parameters"]))
        return made
    if callable(tool):
        return HostTool.from_function(tool, name)
    raise TypeError(f"a tool must be a function, a HostTool or a definition dict, "
                    f"not {type(tool).__name__}")


def check_name(name: str) -> None:
    """Raises ValueError, saying what to do, unless `name` can be a tool's name."""
    if (not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name)
            or len(name) > MAX_NAME_LENGTH):
        raise ValueError(
            f"a tool's name must be a Python identifier (ASCII letters, digits and _, not "
            f"starting with _ or a digit, not a keyword, at most {MAX_NAME_LENGTH} characters): "
            f"{name!r}; name it with tools={{'name': function}} or HostTool(name, ...)"
        )


def identifier(name: str) -> str:
    """`name` made a valid tool name (`search-web` → `search_web`), for tools named elsewhere."""
    made = re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_0123456789")[:MAX_NAME_LENGTH] or "tool"
    return made + "_" if keyword.iskeyword(made) else made


def to_json(value: Any) -> Any:
    """`value` as JSON can hold it, structure kept: sets and tuples become lists, dataclasses,
    pydantic models and named tuples objects, dates ISO 8601 text, enums their values, and
    anything else its `str()`. NaN and infinities raise ValueError (JSON has no such numbers)."""
    return json.loads(json.dumps(value, allow_nan=False, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    return str(value)


def schema_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The JSON Schema object of a function's keyword arguments (see `HostTool.from_function`)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return {"type": "object", "properties": {}}
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception:  # noqa: BLE001 - an unresolvable forward reference: no types, still a tool
        hints = {}
    described = param_docs(inspect.getdoc(function) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = json_schema(hints.get(param.name, Any))
        if param.name in described and "description" not in prop:
            prop["description"] = described[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            try:
                prop["default"] = to_json(param.default)
            except ValueError:
                pass
        properties[param.name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of one type hint; `{}` (anything) where it has no JSON equivalent."""
    try:
        hash(hint)
    except TypeError:
        return {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        schema = json_schema(args[0])
        texts = [a for a in args[1:] if isinstance(a, str)]
        if texts:
            schema["description"] = " ".join(texts)
        return schema
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is typing.Literal:
        schema = {"enum": list(args)}
        kinds = {_JSON_TYPES.get(type(a)) for a in args}
        if len(kinds) == 1 and None not in kinds:
            schema["type"] = kinds.pop()
        return schema
    if origin is typing.Union or origin is types.UnionType:
        options = [json_schema(a) for a in args if a is not type(None)]
        nullable = len(options) < len(args)
        if len(options) == 1 and isinstance(options[0].get("type"), str) and nullable:
            return {**options[0], "type": [options[0]["type"], "null"]}
        if any(not o for o in options):
            return {}
        return {"anyOf": options + ([{"type": "null"}] if nullable else [])}
    if hint in _ARRAYS or origin in _ARRAYS:
        schema = {"type": "array"}
        item = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is ...) else None
        if item is not None and json_schema(item):
            schema["items"] = json_schema(item)
        return schema
    if origin in _JSON_TYPES:  # dict[str, X], Mapping[str, X]
        return {"type": _JSON_TYPES[origin]}
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return {"enum": [m.value for m in hint]}
        if issubclass(hint, bool):
            return {"type": "boolean"}
        for base in (str, int, float):  # str and int subclasses, e.g. StrEnum handled above
            if issubclass(hint, base):
                return {"type": _JSON_TYPES[base]}
        if dataclasses.is_dataclass(hint) or hasattr(hint, "model_json_schema") or (
            typing.is_typeddict(hint)
        ):
            return {"type": "object"}
    return {}


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_GOOGLE_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")


def param_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a docstring: Google style (`Args:` then `name (type): text`,
    continued on more indented lines) or Sphinx style (`:param name: text`)."""
    found: dict[str, str] = {}
    lines = doc.splitlines()
    for line in lines:
        match = _SPHINX_PARAM.match(line.strip())
        if match:
            found[match[1]] = match[2].strip()
    in_section, indent, current = False, None, None
    for line in lines:
        stripped = line.strip()
        if _SECTION.match(stripped):
            in_section, indent, current = True, None, None
            continue
        if not in_section:
            continue
        if not stripped:
            current = None
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:  # the next section, or the text after it
            in_section = False
            continue
        if indent is None:
            indent = depth
        match = _GOOGLE_ARG.match(stripped)
        if depth == indent and match:
            current = match[1].lstrip("*")
            found[current] = match[2].strip()
        elif depth > indent and current is not None:
            found[current] = (found[current] + " " + stripped).strip()
    return found
