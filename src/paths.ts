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
/** Files Moat may rebuild at any time: snapshots, package downloads. */
export const CACHE_DIR = `${ROOT}.moat-cache/`;
/** The policies `MOAT_POLICY` may name without a path. */
export const POLICY_DIR = `${ROOT}policies`;
/** The repository root as a `file:` URL (escaped), the form JavaScript stack frames use. */
export const ROOT_URL = new URL("../", import.meta.url).href;
