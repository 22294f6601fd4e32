"""Authorized imports: the agent's code imports only what the caller allowed (opt-in, per call).

smolagents' local interpreter refuses any import outside its agent's list; an agent moved to Moat
gets the same rule, with the same error text, when its calls carry `authorizedImports`. Only the
code the call sent (and the functions and classes it defines) is checked: a library importing
what it needs, or code sent by a call without the rule (the agent's tools), is not.

Every door of the import system asks: the import statement and `__import__` (also a copy taken
before the guard or put into another builtins dict), `importlib.import_module` and
`importlib.__import__` (through `_bootstrap._gcd_import`, which a re-imported `importlib` still
uses), `importlib.util.module_from_spec`, loaders' `exec_module`/`load_module` (the built-in and frozen
importers' own too, reachable as any module's `__loader__`), and, through the
lockdown, `_imp` and the `import` audit event. The check is by name, so a module already loaded
(or planted in `sys.modules`) is refused all the same.

This is the rule smolagents sets, not a second sandbox: objects an allowed module holds stay
reachable through its attributes (`random._os`), as anything is through introspection; the worker
with no permissions is what confines code. See SECURITY.md.

Nothing secret lives in this module's globals (every function below can reach them): the list
in force and the code that is trusted sit in a generator's frame, which the lockdown's audit hook
refuses to hand out, and the original import functions are constants of their wrappers' code,
whose `__code__` the hook refuses to show.
"""

import builtins
import json
import sys
import types
import warnings
import weakref

# smolagents' BASE_BUILTIN_MODULES (smolagents/utils.py): allowed whenever the rule is on.
BASE_BUILTIN_MODULES = (
    "collections",
    "datetime",
    "itertools",
    "math",
    "queue",
    "random",
    "re",
    "stat",
    "statistics",
    "time",
    "unicodedata",
)

# Modules whose frames are the import system's own: the check looks past them for the caller.
_MACHINERY = (
    "_frozen_importlib",
    "_frozen_importlib_external",
    "importlib",
    "importlib._bootstrap",
    "importlib._bootstrap_external",
    "importlib.util",
    "importlib.machinery",
)

_module_dict = types.ModuleType.__dict__["__dict__"].__get__
_modules = sys.modules  # the interpreter's own table, even if `sys.modules` is rebound
_ORIGINAL = "__moat_original_import_function__"


def _tree(names):
    """smolagents' build_import_tree: "a.b" and "a.*" as nested dicts."""
    tree = {}
    for name in names:
        node = tree
        for part in name.split("."):
            node = node.setdefault(part, {})
    return tree


def _allowed(tree, name):
    """smolagents' check_import_authorized, over a tree built once per call."""
    node = tree
    for part in name.split("."):
        if "*" in node:
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _keeper(token):
    """Holds the rule in force and the trusted code; answers checks, changes only with `token`.

    Every request is checked for exact built-in types first: user code holding `send` must
    not get to run (a `__eq__`, a `split`) while this frame is on the stack.
    """
    rule = None  # (tree, shown list) while the rule is on
    trusted = {}  # id(code) -> weakref(code): code sent while the rule was off
    answer = None
    while True:
        request = yield answer
        answer = None
        try:
            if type(request) is not tuple or not request:
                continue
            kind = request[0]
            if kind == "on" and type(kind) is str:
                answer = rule is not None
            elif kind is token:
                names = request[1]
                rule = None if names is None or "*" in names else (
                    _tree(BASE_BUILTIN_MODULES + names),
                    sorted(set(BASE_BUILTIN_MODULES) | set(names)),
                )
            elif type(kind) is not str:
                continue
            elif kind == "exec" and len(request) == 2 and type(request[1]) is types.CodeType:
                if rule is None:
                    stack = [request[1]]
                    while stack:
                        code = stack.pop()
                        trusted[id(code)] = weakref.ref(code)
                        stack.extend(c for c in code.co_consts if type(c) is types.CodeType)
                    for key in [k for k, ref in trusted.items() if ref() is None]:
                        del trusted[key]
            elif kind == "check" and rule is not None and len(request) == 4:
                _, name, code, verb = request
                if type(name) is not str or verb not in ("Import of", "Import from"):
                    answer = "Import refused: the name to check is not a string"
                    continue
                ref = trusted.get(id(code))
                if not (ref is not None and ref() is code) and not _allowed(rule[0], name):
                    answer = f"{verb} {name} is not allowed. Authorized imports are: {rule[1]}"
        except BaseException as exc:  # noqa: BLE001 - the keeper must survive any request
            answer = f"Import refused: it could not be checked ({type(exc).__name__})"
            del exc


def _is_machinery(g):
    name = g.get("__name__")
    if type(name) is not str or name not in _MACHINERY:
        return False
    module = _modules.get(name)
    return isinstance(module, types.ModuleType) and _module_dict(module) is g


def _caller(frame, skip):
    """The frame an import is made for: past the import system's frames and the guards' own;
    None when a library module makes it (its frame's globals are its module's dict)."""
    guards = {id(g) for g in skip}
    # The import system's functions are looked past; its modules' own top-level code (importlib
    # being imported) is a library like any other.
    while frame is not None and (
        id(frame.f_globals) in guards
        or (frame.f_code.co_name != "<module>" and _is_machinery(frame.f_globals))
    ):
        frame = frame.f_back
    if frame is None:
        return None
    g = frame.f_globals
    name = g.get("__name__")
    module = _modules.get(name) if type(name) is str else None
    if isinstance(module, types.ModuleType) and _module_dict(module) is g:
        return None
    return frame


def _absolute(name, globals_, level):
    """The absolute name a relative import means, resolved as CPython's import.c does; a name
    that cannot be resolved comes back with a leading dot, which no rule allows."""
    if not level:
        return name
    g = globals_ if type(globals_) is dict else {}
    package = g.get("__package__")
    if package is None:
        spec = g.get("__spec__")
        if spec is not None:
            package = getattr(spec, "parent", None)
        else:
            package = g.get("__name__")
            if type(package) is str and "__path__" not in g:
                package = package.rpartition(".")[0]
    if type(package) is not str or not package:
        return "." + name
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{name}" if name else base


# The guards, compiled at install time with the original they call as a constant of their code
# (ORIGINAL below is a placeholder string, swapped for the function by `_seal`).
_GUARDS = """
def import_(name, globals=None, locals=None, fromlist=(), level=0):
    if type(name) is str and type(level) is int:
        verb = "Import from" if fromlist else "Import of"
        refuse(absolute(name, globals, level), caller(), verb)
    return ORIGINAL(name, globals, locals, fromlist, level)

def gcd_import(name, package=None, level=0):
    if type(name) is str and type(level) is int:
        refuse(absolute(name, {"__package__": package}, level), caller(), "Import of")
    return ORIGINAL(name, package, level)

def module_from_spec(spec):
    name = getattr(spec, "name", None)
    if type(name) is str:
        refuse(name, caller(), "Import of")
    return ORIGINAL(spec)

def load_module_shim(self, fullname):
    if type(fullname) is str:
        refuse(fullname, caller(), "Import of")
    return ORIGINAL(self, fullname)

def exec_module_static(module):
    name = getattr(module, "__name__", None)
    if type(name) is str:
        refuse(name, caller(), "Import of")
    return ORIGINAL(module)

def exec_module(self, module):
    name = getattr(self, "name", None)
    if type(name) is not str:
        name = getattr(module, "__name__", None)
    if type(name) is str:
        refuse(name, caller(), "Import of")
    return ORIGINAL(self, module)
""".replace("ORIGINAL", repr(_ORIGINAL))


def _seal(template, original):
    """A copy of `template` that calls `original` as a constant of its code."""
    code = template.__code__
    consts = tuple(original if c == _ORIGINAL else c for c in code.co_consts)
    return types.FunctionType(code.replace(co_consts=consts), template.__globals__, template.__name__,
                              template.__defaults__)


def install(denied, skip=()):
    """Wraps the import system's doors; returns (audit, check, set_authorized).

    `audit(event, args)` is for the lockdown's audit hook (the `import` and `exec` events and
    reads of `__code__`), `check(name)` for its `_imp` guard, and `set_authorized(json_text)`
    (a JSON list, or null for no rule) is for the worker alone, before each call. `skip` holds
    the globals of the lockdown's own functions, which call `check` for the code that imports.
    """
    token = object()
    gen = _keeper(token)
    next(gen)
    send = gen.send
    del gen
    frames_to_skip = (globals(), *skip)

    def refuse(name, frame, verb):
        if frame is None or not send(("on",)):
            return  # no rule in force: the common case costs one question
        caller = _caller(frame, frames_to_skip)
        if caller is None:
            return
        problem = send(("check", name, caller.f_code, verb))
        if problem is not None:
            denied.append(f"import {name} (not an authorized import)")
            raise ImportError(problem, name=name)

    def check(name):
        if type(name) is str:
            refuse(name, sys._getframe(1), "Import of")

    def caller():
        # The frame that called the guard; none when C called it directly (Pyodide restoring a
        # checkpoint imports its own modules that way), and then no user code is importing.
        try:
            return sys._getframe(2)
        except ValueError:
            return None

    guards = {"refuse": refuse, "absolute": _absolute, "caller": caller}
    frames_to_skip += (guards,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # the placeholder string is "called"
        exec(compile(_GUARDS, "<moat-imports>", "exec"), guards)
    sealed = []

    def wrap(owner, attr, template):
        wrapper = _seal(guards[template], getattr(owner, attr))
        setattr(owner, attr, wrapper)
        sealed.append(wrapper)
        return wrapper

    bootstrap = _modules["_frozen_importlib"]
    external = _modules["_frozen_importlib_external"]
    wrap(builtins, "__import__", "import_")
    py_import = wrap(bootstrap, "__import__", "import_")
    wrap(bootstrap, "_gcd_import", "gcd_import")
    spec_wrapper = wrap(bootstrap, "module_from_spec", "module_from_spec")
    wrap(bootstrap, "_load_module_shim", "load_module_shim")
    wrap(external._LoaderBasics, "exec_module", "exec_module")
    # The built-in and frozen importers hold their own references (`load_module` is
    # `classmethod(_load_module_shim)`, taken when the class was made), reachable as any
    # module's `__loader__`: each gets its own sealed guard.
    for importer in (bootstrap.BuiltinImporter, bootstrap.FrozenImporter):
        for attr, template, kind in (
            ("load_module", "load_module_shim", classmethod),
            ("exec_module", "exec_module_static", staticmethod),
        ):
            method = importer.__dict__.get(attr)
            if isinstance(method, kind):
                wrapper = _seal(guards[template], method.__func__)
                setattr(importer, attr, kind(wrapper))
                sealed.append(wrapper)
    importlib = _modules.get("importlib")
    if importlib is not None:
        importlib.__import__ = py_import
    zipimport = _modules.get("zipimport")
    if zipimport is not None:  # the standard library's loader: its own load_module
        wrap(zipimport.zipimporter, "load_module", "load_module_shim")
    util = _modules.get("importlib.util")
    if util is not None:
        util.module_from_spec = spec_wrapper
    sealed_ids = frozenset(id(f) for f in sealed)

    def audit(event, args):
        if event == "import":
            check(args[0])
        elif event == "exec":
            if args and type(args[0]) is types.CodeType:
                send(("exec", args[0]))
        elif event == "object.__getattr__" and args[1] == "__code__" and id(args[0]) in sealed_ids:
            if any(f is args[0] for f in sealed):
                denied.append("__code__ of an import guard")
                raise PermissionError("reading __code__ of Moat's import guard is not allowed")

    def set_authorized(names_json):
        names = json.loads(names_json)
        send((token, None if names is None else tuple(str(n) for n in names)))

    return audit, check, set_authorized
