/**
 * The Deno permissions every interpreter's worker is created with. They are always spelled out,
 * never inherited, so a server started with `--allow-all` (Deno Deploy) still gives each worker
 * only Pyodide's files and its own modules while it boots, and never the network: the host sends
 * every request Python makes (src/outbound/), so a worker holds no network permission even for
 * the policy's hosts.
 * `Interpreter` and the deploy-mode start-up check (src/deploy/check.ts) both use this one
 * function, so the check proves what interpreters get.
 */
import { PYODIDE_DIR } from "../paths.ts";

/** `deno.permissions` for a worker running `workerUrl`. */
export function workerPermissions(workerUrl: URL): Deno.PermissionOptionsObject {
  return {
    // security: Pyodide's files and the worker's own modules, only while it boots
    read: [PYODIDE_DIR, workerDir(workerUrl)],
    write: false,
    net: false, // security: outbound HTTP goes through the host (src/outbound/)
    env: false,
    run: false,
    ffi: false,
    sys: prioritySys(), // its own thread's priority (src/worker/priority.ts); revoked at boot
    import: false,
  };
}

/**
 * `sys` for a worker that lowers its own thread's priority at start: `setPriority` where this
 * process holds it (the server's flags grant it), else nothing, since a worker cannot be given
 * more than its parent (an embedding, a script run with fewer flags).
 */
export function prioritySys(): Deno.PermissionOptionsObject["sys"] {
  const granted = Deno.permissions.querySync({ name: "sys", kind: "setPriority" }).state;
  return granted === "granted" ? ["setPriority"] : false;
}

/** The directory of the worker's entry module (its modules are read from there). */
export function workerDir(url: URL): string {
  return decodeURIComponent(new URL("./", url).pathname);
}
