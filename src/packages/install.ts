/**
 * Worker side of package loading: wheels arrive as bytes from the host and are installed with
 * Pyodide's own installer (the one `loadPyodide().loadPackage` uses after downloading), so the
 * interpreter needs neither network nor file access. Runs inside the worker only.
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";

/** One wheel as the host sends it. */
export interface WheelBytes {
  /** Canonical distribution name, the key the session's loaded set uses. */
  name: string;
  fileName: string;
  /** `site` for packages, `dynlib` for shared libraries such as libopenblas. */
  installDir: "site" | "dynlib";
  /** Top-level modules it provides, so an earlier failure note for them is dropped. */
  imports: string[];
  bytes: Uint8Array;
}

/** Import names that must fail with a reason instead of a bare ModuleNotFoundError. */
export interface Unavailable {
  names: string[];
  reason: string;
}

/** Pyodide's internal installer: unpacks a wheel into the in-memory FS, then loads its `.so`s. */
interface PyodideInternals {
  install(
    buffer: Uint8Array,
    fileName: string,
    dir: string,
    meta: Map<string, string>,
  ): Promise<void>;
  package_loader: { get_install_dir(target: string): string };
}

/**
 * A last-resort finder: `import numpy` after numpy was refused raises ModuleNotFoundError with the
 * reason, instead of Pyodide's hint to run micropip (which Moat does not offer).
 */
const EXPLAIN_MISSING = `
import sys

class MoatUnavailableFinder:
    reasons = {}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        reason = cls.reasons.get(name)
        if reason is None or path is not None:
            return None
        error = ModuleNotFoundError(f"No module named {name!r}: {reason}", name=name)
        error._PYODIDE_ADDED_NOTE = True  # keep Pyodide from adding its micropip hint
        raise error

    @classmethod
    def invalidate_caches(cls):
        pass

sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "MoatUnavailableFinder"]
sys.meta_path.append(MoatUnavailableFinder)
MoatUnavailableFinder.reasons
`;

let reasons: PyProxy | undefined;

/** Installs wheels in order (dependencies first); each result says whether it worked. */
export async function installWheels(
  py: PyodideAPI,
  wheels: WheelBytes[],
): Promise<{ name: string; error?: string }[]> {
  // deno-lint-ignore no-explicit-any
  const api = (py as any)._api as PyodideInternals;
  // deno-lint-ignore no-explicit-any
  const loaded = py.loadedPackages as any as Record<string, string>;
  const results: { name: string; error?: string }[] = [];
  for (const wheel of wheels) {
    if (loaded[wheel.name] !== undefined) {
      results.push({ name: wheel.name });
      continue;
    }
    try {
      const dir = api.package_loader.get_install_dir(wheel.installDir);
      await api.install(
        wheel.bytes,
        wheel.fileName,
        dir,
        new Map([["INSTALLER", "moat"], ["PYODIDE_SOURCE", "moat"]]),
      );
      loaded[wheel.name] = "moat";
      for (const name of wheel.imports) if (reasons?.has(name)) reasons.delete(name);
      results.push({ name: wheel.name });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      results.push({ name: wheel.name, error: message.trim().split("\n").pop() ?? message });
    }
  }
  py.runPython("import importlib; importlib.invalidate_caches()");
  return results;
}

/** Makes later imports of these names fail with the reason; `[]` names nothing. */
export function explainMissing(py: PyodideAPI, unavailable: Unavailable[]): void {
  if (unavailable.length === 0) return;
  reasons ??= py.runPython(EXPLAIN_MISSING) as PyProxy;
  for (const { names, reason } of unavailable) {
    for (const name of names) reasons.set(name, reason);
  }
}
