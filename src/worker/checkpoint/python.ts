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
  const modules = api.sys.modules as PyProxy & Map<string, unknown>;
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
  const stash = py.globals.get("dict")() as PyProxy & Map<string, unknown>;
  stash.set("run", handles.run);
  stash.set("namespace", handles.namespace);
  stash.set("cancel", handles.cancel);
  stash.set("take_denied", handles.takeDenied);
  stash.set("set_authorized", handles.setAuthorized);
  modules.set(STASH, stash);
  stash.destroy();
  return { restore };
}

// No import statement: a checkpoint may follow a call whose authorized imports are still in
// force, and Moat's own code is not the agent's (\`sys\` is put into its globals instead).
const LOOSE_ENDS = `
def loose_ends():
    found = []
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            for task in asyncio.all_tasks(asyncio.get_event_loop()):
                if not task.done():
                    coro = getattr(task.get_coro(), "__qualname__", "?")
                    found.append(f"asyncio task {task.get_name()} ({coro})")
        except Exception:
            pass
    return found
loose_ends
`;

/** The finder, compiled once: each compile would leave different garbage in the next image. */
let findLooseEnds: (PyProxy & (() => PyProxy)) | undefined;

/** Running asyncio tasks: they wait on JavaScript timers or promises no snapshot holds. */
export function looseEnds(py: PyodideAPI): Lost[] {
  if (!findLooseEnds) {
    const scope = py.globals.get("dict")() as PyProxy;
    scope.set("sys", py.pyimport("sys"));
    findLooseEnds = py.runPython(LOOSE_ENDS, { globals: scope });
    scope.destroy();
  }
  const found = findLooseEnds!();
  const names = found.toJs() as string[];
  found.destroy();
  return names.map((what) => ({
    what,
    why: "a running task waits on JavaScript timers or promises, which a checkpoint cannot " +
      "hold; after a restore it never resumes",
  }));
}
