import { sha256Hex } from "../packages/cache.ts";
import type { Limits } from "../policy/schema.ts";
import { PYODIDE_DIR, Sandbox } from "./host.ts";

/** Directory for files Moat may rebuild at any time (snapshots, package downloads). */
export const CACHE_DIR = new URL("../../.moat-cache/", import.meta.url).pathname;

/**
 * Returns the Pyodide memory snapshot workers boot from: read from the cache when one exists
 * for this Pyodide version, worker and runner, else made once by a cold boot and cached. The
 * bytes live in a SharedArrayBuffer, so every worker reads the same copy instead of receiving
 * its own 30 MB clone. (No policy key changes what goes into the snapshot: preloaded packages
 * are installed after the restore.)
 */
export async function loadSnapshot(
  limits: Limits,
  log: (line: string) => void,
): Promise<{ bytes: Uint8Array; cached: boolean }> {
  const path = `${CACHE_DIR}snapshot-${await snapshotKey()}.bin`;
  try {
    return { bytes: shared(await Deno.readFile(path)), cached: true };
  } catch {
    // not cached yet
  }
  log("making the Pyodide memory snapshot (once per Pyodide version; takes a few seconds)…");
  const bytes = await Sandbox.makeSnapshot(limits);
  try {
    await Deno.mkdir(CACHE_DIR, { recursive: true });
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
    await removeStale(path);
  } catch (err) {
    log(`could not cache the snapshot in ${CACHE_DIR} (${(err as Error).message}); continuing`);
  }
  return { bytes: shared(bytes), cached: false };
}

function shared(bytes: Uint8Array): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  view.set(bytes);
  return view;
}

/** Snapshots of other versions are 30 MB each and never used again. */
async function removeStale(keep: string): Promise<void> {
  for await (const entry of Deno.readDir(CACHE_DIR)) {
    const path = `${CACHE_DIR}${entry.name}`;
    if (/^snapshot-.*\.bin$/.test(entry.name) && path !== keep) {
      await Deno.remove(path).catch(() => {});
    }
  }
}

/** Bump when the worker changes what goes into a snapshot. */
const SNAPSHOT_FORMAT = 2;

async function snapshotKey(): Promise<string> {
  const pkg = JSON.parse(await Deno.readTextFile(`${PYODIDE_DIR}package.json`));
  // The worker decides what is imported before the snapshot, the runner what it runs.
  const sources = await Promise.all(
    ["./worker.ts", "./python/runner.py"].map((f) => Deno.readFile(new URL(f, import.meta.url))),
  );
  const joined = new Uint8Array(sources.reduce((n, b) => n + b.length, 0));
  sources.reduce((at, b) => (joined.set(b, at), at + b.length), 0);
  const hex = (await sha256Hex(joined)).slice(0, 16);
  return `${pkg.version}-${SNAPSHOT_FORMAT}-${hex}`;
}
