"""Moat's runner: runs one call REPL-style in the session's globals.

Loaded once per interpreter by the worker. `run` returns (or, for code that
awaits at top level, returns a coroutine of) a pair of JSON texts: the result
and the error (``"null"`` when the code succeeded). JSON is produced here so
that big integers keep every digit on their way to the client.
"""

import ast
import asyncio  # imported here, with no rule in force: a call's authorized imports bind its code only
import base64
import functools
import json
import linecache
import math
import os
import sys
import time
import traceback

_cell = 0
# Where the value of the cell's last expression is parked for the moment between the cell's
# end and the answer; a name no user code uses.
_LAST = "__moat_last_value__"
# Built once: json.dumps with options builds a new encoder on every call.
_encode_result = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
# The task of the running cell when it awaits at top level, so the time limit can cancel it.
_current = None
# What the last call's end could not cancel (descriptions, taken under that call's time limit),
# read by the checkpoint instead of asking the tasks themselves, whose methods the session may own.
_left = ()
# Rounds of the event loop a call's end gives the tasks it cancels to finish.
_SETTLE_ROUNDS = 20
# Set once listing the session's tasks ran its own code past the call's limit (see `_pending`).
_unlistable = False
_MAX_DEPTH = 64
# `moat_tools` (made by the lockdown), set by the worker at boot: a call's host tools come from it.
_moat_tools = None
_MISSING = object()
_HIDDEN_PREFIXES = ("/lib/python", "/lib/pyodide")


def _user_frame(filename):
    """User code lives in cells, or in files the user wrote into the sandbox."""
    if filename.startswith("<cell "):
        return True
    if filename.startswith("<") or filename.startswith(_HIDDEN_PREFIXES):
        return False
    # Frames of JavaScript functions carry host paths that do not exist in the sandbox.
    return os.path.isfile(filename)


def _format_error(exc):
    """The traceback of the user's frames, ending with `Type: message`."""
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    _strip(te, set())
    return "".join(te.format()).rstrip("\n")


def _strip(te, seen):
    if id(te) in seen:
        return
    seen.add(id(te))
    frames = [f for f in te.stack if _user_frame(f.filename)]
    te.stack = traceback.StackSummary.from_list(frames)
    for nested in (te.__cause__, te.__context__):
        if nested is not None:
            _strip(nested, seen)
    for group in getattr(te, "exceptions", None) or ():
        _strip(group, seen)


def _error_json(exc):
    try:
        value = str(exc)
    except BaseException:  # noqa: BLE001 - a broken __str__ must not break the answer
        value = f"<{type(exc).__name__} with unprintable value>"
    try:
        message = _format_error(exc)
    except BaseException:  # noqa: BLE001
        message = f"{type(exc).__name__}: {value}"
    return json.dumps(
        {
            "name": "PythonError",
            "message": message,
            "pythonExceptionType": type(exc).__name__,
            "pythonExceptionValue": value,
        }
    )


def _png(value):
    """PNG bytes of a displayable object (IPython's convention), or None."""
    try:
        if hasattr(type(value), "_repr_png_"):
            data = value._repr_png_()
            if isinstance(data, (bytes, bytearray)):
                return bytes(data)
        if type(value).__name__ == "Figure" and hasattr(value, "savefig"):
            import io

            buf = io.BytesIO()
            value.savefig(buf, format="png")
            return buf.getvalue()
    except Exception:  # noqa: BLE001 - not an image after all; fall back to repr
        return None
    return None


def _safe_repr(value):
    try:
        return repr(value)
    except Exception as exc:  # noqa: BLE001
        return f"<{type(value).__name__} object; repr() raised {type(exc).__name__}>"


def _key(key):
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return _safe_repr(key)


def _jsonable(value, depth=0, active=None):
    """JSON-native values map to JSON, containers recurse, images become PNG, the rest repr()."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        active = active if active is not None else set()
        if depth >= _MAX_DEPTH or id(value) in active:
            return _safe_repr(value)
        active.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): _jsonable(v, depth + 1, active) for k, v in value.items()}
            return [_jsonable(v, depth + 1, active) for v in value]
        finally:
            active.discard(id(value))
    png = _png(value)
    if png is not None:
        return {"type": "image", "data": base64.b64encode(png).decode("ascii")}
    return _safe_repr(value)


def _result_json(value, limit):
    text = _encode_result(_jsonable(value))
    if len(text.encode("utf-8")) <= limit:
        return text, False
    # A string is cut as itself, anything else as its JSON text.
    shown = value if isinstance(value, str) else text
    cut = shown.encode("utf-8")[:limit].decode("utf-8", "ignore")
    return json.dumps(cut + f"… [result cut: {len(shown)} characters exceed the limit of {limit} bytes]"), True


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - user code may have replaced the stream
            pass


def _finish(value, limit):
    _flush()
    result, cut = _result_json(value, limit)
    return result, "null", cut


def _fail(exc):
    _flush()
    return "null", _error_json(exc), False


def _bind_tools(namespace, tools):
    """The call's host tools (JSON text from the worker) as functions in the session's globals;
    returns what to undo when the call ends: a call's tools exist only for that call."""
    if _moat_tools is None:
        raise RuntimeError("host tools are not available in this session (it was restored from "
                           "a checkpoint older than them): reset the session")
    specs = json.loads(tools)
    if specs.get("upstream") is not None:
        _moat_tools._set_upstream(specs["upstream"])
    bound = []
    for spec in specs.get("tools") or ():
        name = spec["name"]
        fn = _moat_tools._function(name, spec.get("description"), spec.get("parameters"))
        bound.append((name, namespace.get(name, _MISSING), fn))
        namespace[name] = fn
    return bound


def _unbind_tools(namespace, bound):
    """Takes the call's tools away again, giving back what they shadowed."""
    for name, old, fn in bound:
        if namespace.get(name) is fn:
            if old is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = old


async def _run_async(code_obj, has_last, namespace, limit, bound=()):
    try:
        await eval(code_obj, namespace)  # CO_COROUTINE: the cell awaited at top level
        outcome = _finish(namespace.pop(_LAST, None) if has_last else None, limit)
    except BaseException as exc:  # noqa: BLE001 - every Python outcome is an answer
        namespace.pop(_LAST, None)
        outcome = _fail(exc)
    finally:
        _unbind_tools(namespace, bound)
    if asyncio.current_task(asyncio.get_event_loop()) is not _current:
        return outcome  # abandoned at its time limit: a later call runs now, its tasks are its own
    return await _settle(outcome)


def _pending(own=0):
    """asyncio tasks still pending, the running cell's own excepted (may run the session's code:
    called only while a call runs, under its time limit). `own`: tasks of Moat's running now."""
    global _unlistable
    if _unlistable:
        return []
    try:
        loop = asyncio.get_event_loop()
        # Pyodide's loop counts the tasks it made that have not finished: none, nothing to look
        # for (every call asks; listing the tasks costs more).
        if getattr(loop, "_in_progress", own + 1) <= own and not _left:
            return []
        me = asyncio.current_task(loop)
        tasks = asyncio.all_tasks(loop)
        return [t for t in tasks if t is not me and isinstance(t, asyncio.Task)
                and not asyncio.Task.done(t)]
    except BaseException:  # noqa: BLE001 - a loop the code broke, or a task's own `done` that
        # ran until the call's time limit: listing tasks runs the session's code, so this session's
        # tasks are no longer settled (the host's deadlines still bound them between calls).
        _unlistable = True
        return []


def _describe(task):
    coro = asyncio.Task.get_coro(task)
    return f"asyncio task {asyncio.Task.get_name(task)} ({getattr(type(coro), '__qualname__', '?')})"


async def _settle(outcome, pending=None):
    """Tasks a call scheduled do not outlive it: those still pending when the cell returns are
    cancelled and given a few rounds of the loop to finish, within the call's time limit, so
    that no Python runs between calls. What would not finish is named for the checkpoint."""
    global _left
    pending = _pending(1) if pending is None else pending
    if not pending:
        _left = ()
        return outcome
    count = len(pending)
    try:
        for _ in range(_SETTLE_ROUNDS):
            for task in pending:
                asyncio.Task.cancel(task)
            await asyncio.sleep(0)
            pending = _pending(1)
            if not pending:
                break
    except asyncio.CancelledError:  # the call's own time ran out while settling
        pass
    _left = tuple(_describe(t) for t in pending)
    plural = "s" if count != 1 else ""
    print(f"moat: {count} asyncio task{plural} still pending when the call ended "
          f"{'was' if count == 1 else 'were'} cancelled (tasks do not outlive their call)"
          + (f"; {len(pending)} did not stop" if pending else ""), file=sys.stderr)
    _flush()
    return outcome


def _settled(outcome):
    """The outcome of a cell that did not await, or a future of it once its tasks are settled."""
    global _current, _left
    pending = _pending()
    if not pending:
        _left = ()
        return outcome
    for task in pending:  # now, before any of them takes a step
        asyncio.Task.cancel(task)
    _current = asyncio.ensure_future(_settle(outcome, pending))
    return _current


def _compile(code, filename):
    """The cell compiled once, its last expression statement (if any) assigned to `_LAST`."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(code, filename, "exec", flags | ast.PyCF_ONLY_AST, dont_inherit=True)
    has_last = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    if has_last:
        expr = tree.body[-1]
        target = ast.copy_location(ast.Name(_LAST, ast.Store()), expr)
        tree.body[-1] = ast.copy_location(ast.Assign([target], expr.value), expr)
    return compile(tree, filename, "exec", flags, dont_inherit=True), has_last


def cancel():
    """Cancels the running cell's task: its time ran out while it awaited (nothing ran to check)."""
    if _current is not None and not _current.done():
        _current.cancel()


def run(code, namespace, limit, tools=None):
    """Runs `code` in `namespace`; returns (result JSON, error JSON, result cut) or a coroutine of it.
    `tools`: the call's host tools and code mode's upstream catalog, as JSON text."""
    global _cell
    _cell += 1
    filename = f"<cell {_cell}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    bound = ()
    try:
        if tools:
            bound = _bind_tools(namespace, tools)
        code_obj, has_last = _compile(code, filename)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError and friends
        _unbind_tools(namespace, bound)
        return _fail(exc)
    if code_obj.co_flags & 0x80:  # CO_COROUTINE: the cell awaits at top level
        global _current
        _current = asyncio.ensure_future(_run_async(code_obj, has_last, namespace, limit, bound))
        return _current
    try:
        exec(code_obj, namespace)
        outcome = _finish(namespace.pop(_LAST, None) if has_last else None, limit)
    except BaseException as exc:  # noqa: BLE001 - every Python outcome is an answer
        namespace.pop(_LAST, None)
        outcome = _fail(exc)
    finally:
        _unbind_tools(namespace, bound)
    return _settled(outcome)


def new_namespace():
    """A fresh `__main__`-like globals dict for a session."""
    import builtins

    return {"__name__": "__main__", "__builtins__": builtins}


def _sliced(sleep):
    """time.sleep in short slices: Python checks for the time limit's interrupt between them."""

    @functools.wraps(sleep)
    def sliced(secs, /):
        if not (isinstance(secs, (int, float)) and 0.05 < secs < math.inf):
            return sleep(secs)  # short sleeps, and the errors, exactly as before
        end = time.monotonic() + secs
        while (left := end - time.monotonic()) > 0:
            sleep(min(left, 0.02))

    return sliced


time.sleep = _sliced(time.sleep)
sys.set_int_max_str_digits(0)
