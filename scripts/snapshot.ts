/**
 * Makes the Pyodide memory snapshot into `.moat-cache/` (or finds it there), so a server started
 * later boots its interpreters from it at once: `deno task snapshot`. Deno Deploy runs it as the
 * build step (`deploy.build` in deno.json), so the snapshot ships with the app.
 */
import { loadSnapshot } from "../src/sandbox/snapshot.ts";

const started = performance.now();
const snapshot = await loadSnapshot((line) => console.error(`moat: ${line}`));
const ms = Math.round(performance.now() - started);
console.error(
  `moat: snapshot ${snapshot.cached ? "already cached" : "made"} at ${
    snapshot.path ?? "(nowhere: the cache is not writable)"
  } ` +
    `(${(snapshot.bytes.byteLength / 1e6).toFixed(1)} MB, ${ms} ms)`,
);
if (!snapshot.path) Deno.exit(1);
