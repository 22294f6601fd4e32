/**
 * The Python side of a checkpoint: what is put where Pyodide's restore (and ours) can find it
 * for the moment of the snapshot, and what in the interpreter a snapshot cannot carry on.
 * Runs inside the worker only, between calls (no user code runs while any of this is set).
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import type { Lost } from "./format.ts";
import type { SessionHandles } from "./snapshot.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

/** Where the session's handles wait in `sys.modules` while a snapshot is taken and restored. */
export const STASH = "__moat_checkpoint__";

/**
 * Puts back, for the snapshot only, what the lockdown removed and Pyodide's restore imports by
 * name (`_pyodide_core`, `pyodide.code`, `pyodide.ffi`, `pyodide._package_loader`, the
 * attribute `_pyodide._importhook`), and stashes the session's handles next to them when given.
 * `restore()` removes all of it again; a restored interpreter calls this without handles to
 * remove what its image still holds.
 */
export function releaseForSnapshot(
  py: PyodideAPI,
  handles: SessionHandles | undefined,
  bridges: { core: PyProxy; importhook: PyProxy },
): { restore(): void } {
  const api = (py as Any)._api;
  assertPlain(api.sys, "module", "the module sys");
  const modules = api.sys.modules as PyProxy & Map<string, unknown>;
  assertPlain(modules, "dict", "sys.modules");
  assertPlain(api._pyodide, "module", "the module _pyodide");
  const named: [string, unknown][] = [
    ["_pyodide_core", bridges.core],
    ["pyodide.code", api.pyodide_code],
    ["pyodide.ffi", api.pyodide_ffi],
    ["pyodide._package_loader", api.package_loader],
  ];
  const restore = () => {
    for (const [name] of named) if (modules.has(name)) modules.delete(name);
    if (modules.has(STASH)) modules.delete(STASH);
    try {
      delete api._pyodide._importhook;
    } catch {
      // not set
    }
  };
  if (!handles) {
    restore();
    return { restore: () => {} };
  }
  for (const [name, value] of named) modules.set(name, value);
  api._pyodide._importhook = bridges.importhook;
  // Made by Pyodide's converter, not by calling `dict`: the session may have replaced builtins.
  const stash = py.toPy(new Map()) as PyProxy & Map<string, unknown>;
  stash.set("run", handles.run);
  stash.set("namespace", handles.namespace);
  stash.set("cancel", handles.cancel);
  stash.set("take_denied", handles.takeDenied);
  stash.set("set_authorized", handles.setAuthorized);
  modules.set(STASH, stash);
  stash.destroy();
  return { restore };
}

/**
 * Refuses an object whose methods the session may have replaced (`sys.modules = MyDict()`, a
 * module given a class of its own): with the exact built-in type, what Moat calls on it is the
 * type's own C code, never the session's Python. Reading the type runs no Python either.
 */
function assertPlain(value: PyProxy, type: string, what: string): void {
  if (value?.type !== type) {
    throw new Error(
      `${what} was replaced by an object of type '${value?.type}': the session's state cannot be ` +
        `checkpointed (Moat runs none of the session's code to take it)`,
    );
  }
}

/**
 * Running asyncio tasks: they wait on JavaScript timers or promises no snapshot holds. The
 * runner names them at the end of each call (within its time limit); asking the tasks here would
 * run the session's own methods between calls, outside any limit.
 */
export function looseEnds(run: PyProxy): Lost[] {
  const globals = run.__globals__ as PyProxy & Map<string, unknown>;
  const left = globals.get("_left") as PyProxy | undefined;
  const names = (left?.toJs() ?? []) as string[];
  left?.destroy();
  globals.destroy();
  return names.map((what) => ({
    what,
    why: "a running task waits on JavaScript timers or promises, which a checkpoint cannot " +
      "hold; after a restore it never resumes",
  }));
}
