/**
 * Taking everything away: the worker's Deno permissions, and Python's handles on this worker's
 * JavaScript (`python/lockdown.py`). See SECURITY.md for which layer stops what.
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import { capBuffers } from "./limits.ts";
import { fetchJson } from "./network.ts";

/** After boot the worker needs no permission, except net for the policy's allowed hosts. */
export function dropPermissions(keepNet: boolean): void {
  const names = ["read", "write", "net", "env", "run", "ffi", "sys", "import"] as const;
  for (const name of names) {
    if (name === "net" && keepNet) continue;
    Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
  }
}

/** What the lockdown needs from the boot request. */
export interface LockdownOptions {
  /** Source of `python/lockdown.py`. */
  source: string;
  /** Hosts `moat.fetch` may reach; none: `moat` does not exist. */
  network: string[];
  /** The interpreter's memory cap, which also bounds JavaScript buffers. */
  memoryBytes: number;
}

/**
 * Runs `python/lockdown.py`; from here on Python code has no handle on this worker's JS.
 * Returns the lockdown's `take_denied()`: what it refused since it was last asked.
 */
export function lockDown(pyodide: PyodideAPI, options: LockdownOptions): () => PyProxy {
  pyodide.unregisterJsModule("js");
  pyodide.unregisterJsModule("pyodide_js");
  const scope = pyodide.globals.get("dict")();
  pyodide.runPython(options.source, { globals: scope, filename: "<moat-lockdown>" });
  const install = scope.get("install");
  const { network, memoryBytes } = options;
  const fetcher = network.length ? fetchJson(network, memoryBytes / 4) : undefined;
  const takeDenied = install(fetcher);
  install.destroy();
  scope.destroy();
  capBuffers(memoryBytes, 2 * memoryBytes + 256 * 1024 * 1024);
  return takeDenied;
}
