/**
 * Taking everything away: the worker's Deno permissions, and Python's handles on this worker's
 * JavaScript (`python/lockdown.py`). See SECURITY.md for which layer stops what.
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import { knownObject } from "./checkpoint/snapshot.ts";
import { capBuffers } from "./limits.ts";
import { callTool, sendHttp } from "./tools.ts";

/** After boot the worker needs no permission: even its HTTP requests are sent by the host. */
export function dropPermissions(): void {
  const names = ["read", "write", "net", "env", "run", "ffi", "sys", "import"] as const;
  for (const name of names) Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
}

/** What the lockdown needs from the boot request. */
export interface LockdownOptions {
  /** Source of `python/lockdown.py`. */
  source: string;
  /** Source of `python/imports.py` (authorized imports), which the lockdown installs. */
  imports: string;
  /** Source of `python/http.py` (Python's HTTP clients over the host), installed with network. */
  http: string;
  /**
   * Hosts of `network.allow`; any: `moat.fetch` and Python's HTTP clients send through the host
   * (which checks each request); none: `moat` does not exist.
   */
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
  let http: PyProxy | undefined;
  if (network.length) {
    knownObject(sendHttp, "http"); // a checkpoint names it; a restore rebuilds it
    const httpScope = pyodide.globals.get("dict")();
    pyodide.runPython(options.http, { globals: httpScope, filename: "<moat-http>" });
    http = httpScope.get("install");
    httpScope.destroy();
  }
  knownObject(callTool, "tools");
  const installed = install(http && sendHttp, guardImports, callTool, http);
  http?.destroy();
  const locked = {
    takeDenied: installed.get(0),
    setAuthorized: installed.get(1),
    tools: installed.get(2),
  };
  for (const proxy of [installed, guardImports, importsScope, install, scope]) proxy.destroy();
  capBuffers(memoryBytes, 2 * memoryBytes + 256 * 1024 * 1024);
  return locked;
}
