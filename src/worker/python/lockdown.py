"""Moat's lockdown: takes the bridge to JavaScript away from user code.

The worker runs `install()` once per interpreter, after the runner and before any user code.
The sandbox is the Deno worker (no permissions, interrupted and then terminated on timeout);
this is defense in depth inside it. Pyodide leaves handles to the worker's JavaScript lying
around (the `js` and `pyodide_js` modules, `pyodide.ffi`, the C module `_pyodide_core`, the
event loop's globals). Through them Python could reach the interrupt buffer and the output
hooks, or grow JavaScript memory that the wasm memory cap does not bound. `install()` removes
every such handle it knows of and blocks the ways back in (imports, `gc` walks, tracing,
`ctypes`) with an audit hook, which Python code cannot remove.

Nothing secret is kept in this module's globals: what the worker needs lives in closures and
in a generator's frame, and the audit hook refuses to hand out generator frames.
"""

import sys
import types

# Modules that hand out JavaScript objects, or raw memory. Importing them raises ImportError.
_BLOCKED = frozenset(
    {
        "js",
        "pyodide_js",
        "_pyodide_core",
        "pyodide.ffi",
        "pyodide.ffi.wrappers",
        "pyodide.code",
        "pyodide.http",
        "pyodide.console",
        "pyodide.webloop",
        "pyodide._core",
        "pyodide._package_loader",
        "pyodide._run_js",
        "_pyodide._importhook",
        "_pyodide._core_docs",
        "_pyodide.jsbind",
        "ctypes",
        "_ctypes",
    }
)

# Modules whose globals keep their JavaScript handles (still removed from sys.modules).
_KEEP = frozenset({"pyodide._package_loader"})

# Audit events that walk the object graph or other frames.
_BLOCKED_EVENTS = frozenset(
    {
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys.settrace",
        "sys.setprofile",
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.monitoring.register_callback",
    }
)

# Events authorized imports (imports.py) also hear: fresh imports, code run by exec/eval (trusted
# when no rule is on), and reads of its guards' `__code__`.
_IMPORT_EVENTS = frozenset({"import", "exec", "object.__getattr__"})

# Attributes that expose a suspended generator's or coroutine's frame.
_FRAME_ATTRS = frozenset({"gi_frame", "cr_frame", "ag_frame"})


class BlockedByPolicy(ImportError):
    """An import Moat's lockdown refuses; an ImportError so optional imports degrade."""


def _blocked_name(name):
    return any(name == b or name.startswith(b + ".") for b in _BLOCKED)


def _stub(name, **attrs):
    module = types.ModuleType(name, "Emptied by Moat: Python code gets no JavaScript here.")
    module.__dict__.update(attrs)
    return module


def _opaque_scheduler(schedule, once):
    """`scheduleCallback` and `create_once_callable` for the event loop, without exposing them.

    The originals stay in this generator's frame; the wrappers return plain Python values, and
    errors come back as text, so no traceback ever carries that frame.
    """

    def keeper(schedule, once):
        # Every statement, the loop's own jump included, sits inside the try: a KeyboardInterrupt
        # from a time limit may land anywhere, and a generator it escaped would be gone for good.
        problem = None
        while True:
            try:
                while True:
                    request = yield problem
                    problem = None
                    fn, kwargs, delay = request
                    schedule(once(fn, **kwargs), delay)
            except BaseException as exc:  # noqa: BLE001 - reported as text, frame not leaked
                problem = (type(exc) is KeyboardInterrupt, f"{type(exc).__name__}: {exc}")
                del exc

    gen = keeper(schedule, once)
    next(gen)
    send = gen.send
    del gen, schedule, once

    def create_once_callable(fn, **kwargs):
        return (fn, kwargs)

    def scheduleCallback(token, delay):  # noqa: N802 - the name the event loop calls
        fn, kwargs = token
        problem = send((fn, kwargs, delay))
        if problem is not None:
            interrupted, message = problem
            if interrupted:
                raise KeyboardInterrupt
            raise RuntimeError(message)

    return create_once_callable, scheduleCallback


def _guard_imp(denied, check_import=None):
    """Wraps `_imp.create_builtin`/`create_dynamic`, which importlib calls without the audit
    event `import` (e.g. `importlib.import_module`), so blocked C modules stay blocked.

    The originals stay in a generator's frame and only ever receive a spec made here (of an
    immutable type), so no user code runs while that frame is on the stack.
    """
    import _imp

    def keeper(create_builtin, create_dynamic):
        request = yield
        while True:
            kind, spec, file = request
            try:
                if kind == "builtin":
                    result = create_builtin(spec)
                else:
                    result = create_dynamic(spec, file) if file is not None else create_dynamic(spec)
                request = yield (result, None)
            except BaseException as exc:  # noqa: BLE001 - re-raised outside this frame
                error = (type(exc), str(exc))
                del exc
                request = yield (None, error)

    gen = keeper(_imp.create_builtin, _imp.create_dynamic)
    next(gen)
    send = gen.send
    del gen

    def call(kind, spec, file=None):
        name = spec.name
        if type(name) is not str:
            raise TypeError("spec.name must be a str")
        if _blocked_name(name):
            denied.append(f"import {name}")
            raise BlockedByPolicy(f"import of '{name}' is blocked by Moat's sandbox policy")
        if check_import is not None:
            check_import(name)  # authorized imports (imports.py), for the code that imports
        origin = getattr(spec, "origin", None)
        clean = types.SimpleNamespace(name=name, origin=origin if type(origin) is str else None)
        result, error = send((kind, clean, file))
        if error is not None:
            raise error[0](error[1])
        return result

    def create_builtin(spec):
        return call("builtin", spec)

    def create_dynamic(spec, file=None):
        return call("dynamic", spec, file)

    _imp.create_builtin = create_builtin
    _imp.create_dynamic = create_dynamic


def _no_run_sync(*_args, **_kwargs):
    raise RuntimeError("run_sync is not available in Moat")


def _sealed(function):
    """`send((args...))` calls `function(*args)`, which stays in a generator's frame: no Python
    object leads to it (the audit hook refuses suspended frames), so user code can only call it
    the way the caller's wrapper does."""

    def keeper(function):
        request = yield
        while True:
            request = yield function(*request)

    gen = keeper(function)
    next(gen)
    return gen.send


class ToolError(Exception):
    """A host tool failed or could not be called; the text says why (PROTOCOL.md §6)."""


def _tool_doc(description, parameters):
    """A tool's docstring: its description, then its parameters as the schema gives them."""
    lines = [str(description or "").strip()]
    props = (parameters or {}).get("properties") or {}
    required = set((parameters or {}).get("required") or ())
    if props:
        lines += ["", "Arguments:"]
        for key, schema in props.items():
            schema = schema if isinstance(schema, dict) else {}
            kind = schema.get("type", "any")
            note = "" if key in required else ", optional"
            text = str(schema.get("description", "")).strip()
            lines.append(f"    {key} ({kind}{note}){': ' + text if text else ''}")
    return "\n".join(lines).strip()


def _identifier(name):
    """An upstream tool's name as a Python function name (`list-repos` → `list_repos`)."""
    import keyword
    import re

    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident + "_" if keyword.iskeyword(ident) else ident


def _tools_module(call_tool):
    """The `moat_tools` module: `ToolError`, and the functions through which Python calls tools
    that run outside the sandbox (the host checks every name against the running call).

    `call_tool` is the worker's JavaScript function; it blocks until the host answers and
    answers JSON text only.
    """
    import json

    send = _sealed(call_tool)
    del call_tool
    loads = json.loads
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode

    def call(name, arguments):
        try:
            text = dumps(arguments)
        except (TypeError, ValueError) as exc:
            raise ToolError(f"the arguments of '{name}' must be JSON values: {exc}") from None
        answer = loads(send((name, text)))
        if answer.get("interrupted"):
            raise KeyboardInterrupt
        if "error" in answer:
            raise ToolError(str(answer["error"]))
        return answer.get("result")

    def function(name, description, parameters, target=None):
        """A plain, synchronous function calling tool `target` (default `name`)."""
        props = list(((parameters or {}).get("properties") or {}).keys())
        target = target or name

        def tool(*args, **kwargs):
            if len(args) > len(props):
                raise TypeError(
                    f"{name}() takes {len(props)} positional arguments but {len(args)} were given"
                )
            for key, value in zip(props, args):
                if key in kwargs:
                    raise TypeError(f"{name}() got multiple values for argument '{key}'")
                kwargs[key] = value
            return call(target, kwargs)

        tool.__name__ = tool.__qualname__ = name
        tool.__doc__ = _tool_doc(description, parameters)
        tool.__module__ = "moat_tools"
        return tool

    module = _stub("moat_tools", ToolError=ToolError)
    module.__doc__ = (
        "Tools that run outside the sandbox. `ToolError` is what a failed tool raises; each "
        "upstream MCP server of the policy is a module here: `from moat_tools import <server>`."
    )

    def set_upstream(upstream):
        """Makes `moat_tools.<server>` for each upstream server, with its tools (code mode)."""
        servers = {name: [] for name in upstream.get("servers") or ()}
        for spec in upstream.get("tools") or ():
            servers.setdefault(spec["server"], []).append(spec)
        for name in [n for n in sys.modules if n.startswith("moat_tools.")]:
            del sys.modules[name]
            module.__dict__.pop(name.split(".", 1)[1], None)
        for server, specs in servers.items():
            sub = _stub(f"moat_tools.{server}")
            sub.__doc__ = f"The tools of the upstream MCP server '{server}' (the policy's tools.mcp)."
            for spec in specs:
                ident = _identifier(spec["name"])
                target = f"{server}.{spec['name']}"
                setattr(sub, ident, function(ident, spec.get("description"), spec.get("parameters"), target))
            sys.modules[sub.__name__] = sub
            setattr(module, server, sub)

    module._function = function
    module._set_upstream = set_upstream
    return module


def install(send_http=None, guard_imports=None, call_tool=None, http_install=None):
    """Locks the interpreter down; returns `(take_denied, set_authorized, moat_tools)` for the
    worker (never stored here).

    `send_http` and `http_install` (http.py's `install`), given when the policy allows network
    hosts, wire Python's HTTP clients and `moat.fetch` to the host, which sends each request.
    `call_tool` is the worker's host-tool call, which `moat_tools` wraps.
    `guard_imports` is `imports.install` (imports.py): authorized imports ride on this module's
    audit hook and `_imp` guard; `set_authorized` is None without it.
    """
    denied = []
    audit_imports = check_import = set_authorized = None
    if guard_imports is not None:
        audit_imports, check_import, set_authorized = guard_imports(denied, (globals(),))
    core = sys.modules["_pyodide_core"]
    webloop = sys.modules["pyodide.webloop"]
    create_once_callable, schedule = _opaque_scheduler(
        webloop.scheduleCallback, webloop.create_once_callable
    )

    # Every module-level name that is a JavaScript object, or a function of `_pyodide_core`
    # (whose `__self__` is that module), goes away. The event loop keeps opaque wrappers.
    bridge_types = tuple(
        t for t in (getattr(core, "JsProxy", None),) if isinstance(t, type)
    )
    for name, module in list(sys.modules.items()):
        # The package loader keeps its bridge: Pyodide's JavaScript calls it to install wheels,
        # and once out of sys.modules no Python object leads to it (its one class has no code).
        if not isinstance(module, types.ModuleType) or module is core or name in _KEEP:
            continue
        for key, value in list(vars(module).items()):
            if key.startswith("__"):
                continue
            if (
                (bridge_types and isinstance(value, bridge_types))
                or getattr(value, "__self__", None) is core
                or value is core
                or (isinstance(value, types.ModuleType) and _blocked_name(value.__name__))
            ):
                delattr(module, key)
    webloop.scheduleCallback = schedule
    webloop.create_once_callable = create_once_callable
    webloop.run_sync = _no_run_sync
    webloop.can_run_sync = lambda: False

    # Constructing a JsException makes a JavaScript Error object; refuse it.
    def no_new(cls, *args, **kwargs):
        raise TypeError(f"{cls.__name__} cannot be created in Moat")

    for cls in (getattr(core, "JsException", None),):
        if isinstance(cls, type):
            cls.__new__ = no_new

    for name in list(sys.modules):
        if _blocked_name(name):
            del sys.modules[name]
    config = types.SimpleNamespace(enableRunUntilComplete=False)
    sys.modules["js"] = _stub("js")
    sys.modules["pyodide_js"] = _stub("pyodide_js", _api=_stub("pyodide_js._api", config=config))
    sys.modules["pyodide_js._api"] = sys.modules["pyodide_js"]._api
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "JsFinder"]
    if send_http is not None and http_install is not None:
        sys.modules["moat"] = http_install(_sealed(send_http), _stub)
        del send_http, http_install
    tools = None
    if call_tool is not None:
        tools = sys.modules["moat_tools"] = _tools_module(call_tool)
        del call_tool
        import builtins

        builtins.ToolError = ToolError

    def hook(event, args):
        if event == "import":
            name = args[0]
            if _blocked_name(name):
                denied.append(f"import {name}")
                raise BlockedByPolicy(f"import of '{name}' is blocked by Moat's sandbox policy")
        elif event in _BLOCKED_EVENTS:
            denied.append(event)
            raise PermissionError(f"{event} is blocked by Moat's sandbox policy")
        elif event == "object.__getattr__" and args[1] in _FRAME_ATTRS:
            denied.append(f"{args[1]} of a suspended frame")
            raise PermissionError(f"reading {args[1]} is blocked by Moat's sandbox policy")
        elif event.startswith("ctypes."):
            denied.append(event)
            raise PermissionError(f"{event} is blocked by Moat's sandbox policy")
        if audit_imports is not None and event in _IMPORT_EVENTS:
            audit_imports(event, args)

    sys.addaudithook(hook)
    _guard_imp(denied, check_import)

    def take_denied():
        taken = list(denied)
        denied.clear()
        return taken

    return take_denied, set_authorized, tools
