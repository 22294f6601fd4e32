/**
 * Package installation inside the worker: wheels arrive as bytes from the host and are
 * installed with Pyodide's own installer (the one `loadPyodide().loadPackage` uses after
 * downloading), so the interpreter needs neither network nor file access.
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import type { InstallResult, Unavailable, WheelBytes } from "../protocol/messages.ts";
import { messageOf } from "./errors.ts";

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

/** One interpreter's packages: installing wheels, and explaining the ones it cannot have. */
export class Packages {
  /** The finder's reasons (import name → why), once a package was unavailable. */
  #reasons?: PyProxy;

  /** `unavailableSource` is `python/unavailable.py`, run the first time it is needed. */
  constructor(private readonly py: PyodideAPI, private readonly unavailableSource: string) {}

  /** Installs wheels in order (dependencies first); each result says whether it worked. */
  async install(wheels: WheelBytes[]): Promise<InstallResult[]> {
    // deno-lint-ignore no-explicit-any
    const api = (this.py as any)._api as PyodideInternals;
    // deno-lint-ignore no-explicit-any
    const loaded = this.py.loadedPackages as any as Record<string, string>;
    const results: InstallResult[] = [];
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
        for (const name of wheel.imports) if (this.#reasons?.has(name)) this.#reasons.delete(name);
        results.push({ name: wheel.name });
      } catch (err) {
        const message = messageOf(err);
        results.push({ name: wheel.name, error: message.trim().split("\n").pop() ?? message });
      }
    }
    // Called from JavaScript, not as Python's import statement: a restore runs this while the
    // session's authorized imports are in force, and they bind the agent's code only.
    const importlib = this.py.pyimport("importlib");
    importlib.invalidate_caches();
    importlib.destroy();
    return results;
  }

  /** Makes later imports of these names fail with the reason; `[]` names nothing. */
  explainMissing(unavailable: Unavailable[]): void {
    if (unavailable.length === 0) return;
    this.#reasons ??= this.py.runPython(this.unavailableSource, {
      filename: "<moat-unavailable>",
    }) as PyProxy;
    for (const { names, reason } of unavailable) {
      for (const name of names) this.#reasons.set(name, reason);
    }
  }
}
