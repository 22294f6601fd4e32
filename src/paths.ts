/**
 * Where Moat's files are, built once from this module's location and URL-decoded, so a checkout
 * under a directory whose name has a space (or any escaped character) is named the same way
 * everywhere: in permission grants, in worker read grants and when host paths are scrubbed.
 */

/** The repository root, where `main.ts` lives (ends with `/`). */
export const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
/** Pyodide's npm package: the only directory a worker may read, and only while it boots. */
export const PYODIDE_DIR = `${ROOT}node_modules/pyodide/`;
/** Everything that runs inside a worker (its read grant while it boots; the snapshot key). */
export const WORKER_DIR = `${ROOT}src/worker/`;
/** The worker's entry module. */
export const WORKER_URL = new URL("./worker/main.ts", import.meta.url);
/** The sealing worker's modules (src/codec/sealer.ts): its only read grant, and its parent's. */
export const CODEC_DIR = `${ROOT}src/codec/`;
/** The memory delta format, which the sealing worker reads too (it merges chains of deltas). */
export const DELTA_MODULE = `${WORKER_DIR}checkpoint/delta.ts`;
/** The sealing worker's entry module. */
export const SEALER_WORKER_URL = new URL("./codec/worker.ts", import.meta.url);
/** The session store's modules: the read grant of the worker that runs Deno KV (`thread.ts`). */
export const STORE_DIR = `${ROOT}src/store/`;
/** How a worker lowers its thread's priority; the store's worker reads it too. */
export const PRIORITY_MODULE = `${WORKER_DIR}priority.ts`;
/** The store worker's entry module. */
export const STORE_WORKER_URL = new URL("./store/thread_worker.ts", import.meta.url);
/**
 * The cache as shipped with the code: `deno task snapshot` (Deno Deploy's build step) writes the
 * snapshot here, and `deno task compile` embeds it in the binary from here.
 */
export const SHIPPED_CACHE_DIR = `${ROOT}.moat-cache/`;
/**
 * Files Moat may rebuild at any time: snapshots, package downloads. `.moat-cache/` beside
 * main.ts, or the `--cache-dir=PATH` argument a compiled binary has baked in (its own files are
 * read-only there). Main thread only: workers import nothing from outside src/worker/.
 */
export const CACHE_DIR = cacheDirArgument() ?? SHIPPED_CACHE_DIR;

function cacheDirArgument(): string | undefined {
  const arg = globalThis.Deno?.args?.find((a) => a.startsWith("--cache-dir="));
  return arg ? arg.slice("--cache-dir=".length).replace(/\/?$/, "/") : undefined;
}
/** The policies `MOAT_POLICY` may name without a path. */
export const POLICY_DIR = `${ROOT}policies`;
/** The repository root as a `file:` URL (escaped), the form JavaScript stack frames use. */
export const ROOT_URL = new URL("../", import.meta.url).href;
