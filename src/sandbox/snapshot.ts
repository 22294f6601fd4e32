/** The Pyodide memory snapshot every interpreter boots from: made once, cached, shared. */
import { sha256Hex } from "../digest.ts";
import { CACHE_DIR, PYODIDE_DIR, SHIPPED_CACHE_DIR, WORKER_DIR } from "../paths.ts";
import { messageOf } from "../worker/errors.ts";
import { Interpreter } from "./interpreter.ts";

/**
 * Returns the Pyodide memory snapshot workers boot from: read from the cache when one exists
 * for this Pyodide version and worker, else made once by a cold boot and cached. The bytes live
 * in a SharedArrayBuffer, so every worker reads the same copy instead of receiving its own
 * 30 MB clone. (No policy key changes what goes into the snapshot: preloaded packages are
 * installed after the restore.)
 */
export async function loadSnapshot(
  log: (line: string) => void,
  /**
   * A writable directory for when the cache directory is not (Deno Deploy's disk): the snapshot
   * is looked for there too, and made there once when neither has it.
   */
  fallbackDir?: string,
): Promise<{ bytes: Uint8Array; cached: boolean; path?: string }> {
  const name = `snapshot-${await snapshotKey()}.bin`;
  const dirs = fallbackDir ? [CACHE_DIR, fallbackDir.replace(/\/?$/, "/")] : [CACHE_DIR];
  // A compiled binary also looks in the snapshot it embeds (read-only there).
  const readFrom = [...new Set([...dirs, SHIPPED_CACHE_DIR])];
  for (const dir of readFrom) {
    try {
      return {
        bytes: shared(await Deno.readFile(`${dir}${name}`)),
        cached: true,
        path: dir + name,
      };
    } catch {
      // not cached there
    }
  }
  // Made in silence (a few seconds, once per Pyodide version): the ready line says "made now".
  const bytes = await Interpreter.makeSnapshot();
  for (const dir of dirs) {
    const path = `${dir}${name}`;
    try {
      await Deno.mkdir(dir, { recursive: true });
      const tmp = `${path}.${crypto.randomUUID()}.tmp`;
      await Deno.writeFile(tmp, bytes);
      await Deno.rename(tmp, path);
      await removeStale(dir, path);
      if (dir !== CACHE_DIR) log(`cached the snapshot in ${dir} (${CACHE_DIR} is not writable)`);
      return { bytes: shared(bytes), cached: false, path };
    } catch (err) {
      log(`could not cache the snapshot in ${dir} (${messageOf(err)}); continuing`);
    }
  }
  return { bytes: shared(bytes), cached: false };
}

function shared(bytes: Uint8Array): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  view.set(bytes);
  return view;
}

/** Snapshots of other versions are 30 MB each and never used again. */
async function removeStale(dir: string, keep: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}${entry.name}`;
    if (/^snapshot-.*\.bin$/.test(entry.name) && path !== keep) {
      await Deno.remove(path).catch(() => {});
    }
  }
}

/** Bump when what goes into a snapshot changes in a way the worker's sources do not show. */
const SNAPSHOT_FORMAT = 3;

/** Every file under `dir`, sorted by path, so the key does not depend on directory order. */
async function filesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory) found.push(...await filesUnder(`${path}/`));
    else if (entry.isFile && !entry.name.endsWith("_test.ts")) found.push(path);
  }
  return found.sort();
}

/** The Pyodide version and a digest of the worker directory, which decides what is snapshotted. */
async function snapshotKey(): Promise<string> {
  const pkg = JSON.parse(await Deno.readTextFile(`${PYODIDE_DIR}package.json`));
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const path of await filesUnder(WORKER_DIR)) {
    parts.push(encoder.encode(`${path.slice(WORKER_DIR.length)}\0`), await Deno.readFile(path));
  }
  const joined = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
  parts.reduce((at, b) => (joined.set(b, at), at + b.length), 0);
  const hex = (await sha256Hex(joined)).slice(0, 16);
  return `${pkg.version}-${SNAPSHOT_FORMAT}-${hex}`;
}
