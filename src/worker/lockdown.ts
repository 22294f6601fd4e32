/**
 * Taking everything away: the worker's Deno permissions, and Python's handles on this worker's
 * JavaScript (`python/lockdown.py`). See SECURITY.md for which layer stops what.
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import { knownObject } from "./checkpoint/snapshot.ts";
import { capBuffers } from "./limits.ts";
import { fetchJson } from "./network.ts";
import { callTool } from "./tools.ts";

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
  /** Source of `python/imports.py` (authorized imports), which the lockdown installs. */
  imports: string;
  /** Hosts `moat.fetch` may reach; none: `moat` does not exist. */
  network: string[];
  /** The interpreter's memory cap, which also bounds JavaScript buffers. */
  memoryBytes: number;
}

/** What the lockdown leaves the worker: its two handles, held in closures Python cannot reach. */
export interface Locked {
  /** `take_denied()`: what the lockdown refused since it was last asked. */
  takeDenied: () => PyProxy;
  /** `set_authorized(json)`: the running call's authorized imports, or `null` for no rule. */
  setAuthorized: (json: string) => void;
  /** The `moat_tools` module, which the runner makes a call's host tools with. */
  tools: PyProxy;
}

/** Runs `python/lockdown.py`; from here on Python code has no handle on this worker's JS. */
export function lockDown(pyodide: PyodideAPI, options: LockdownOptions): Locked {
  pyodide.unregisterJsModule("js");
  pyodide.unregisterJsModule("pyodide_js");
  const scope = pyodide.globals.get("dict")();
  pyodide.runPython(options.source, { globals: scope, filename: "<moat-lockdown>" });
  const install = scope.get("install");
  const importsScope = pyodide.globals.get("dict")();
  pyodide.runPython(options.imports, { globals: importsScope, filename: "<moat-imports>" });
  const guardImports = importsScope.get("install");
  const { network, memoryBytes } = options;
  const fetcher = network.length ? fetchJson(network, memoryBytes / 4) : undefined;
  if (fetcher) knownObject(fetcher, "fetch"); // a checkpoint names it; a restore rebuilds it
  knownObject(callTool, "tools");
  const installed = install(fetcher, guardImports, callTool);
  const locked = {
    takeDenied: installed.get(0),
    setAuthorized: installed.get(1),
    tools: installed.get(2),
  };
  for (const proxy of [installed, guardImports, importsScope, install, scope]) proxy.destroy();
  capBuffers(memoryBytes, 2 * memoryBytes + 256 * 1024 * 1024);
  return locked;
}
