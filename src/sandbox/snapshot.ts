import type { Limits } from "../policy/schema.ts";
import { PYODIDE_DIR, Sandbox } from "./host.ts";

/** Directory for files Moat may rebuild at any time (snapshots, package downloads). */
export const CACHE_DIR = new URL("../../.moat-cache/", import.meta.url).pathname;

/**
 * Returns the Pyodide memory snapshot workers boot from: read from the cache when one exists
 * for this Pyodide version and runner, else made once by a cold boot and cached.
 */
export async function loadSnapshot(
  limits: Limits,
  log: (line: string) => void,
): Promise<{ bytes: Uint8Array; cached: boolean }> {
  const path = `${CACHE_DIR}snapshot-${await snapshotKey()}.bin`;
  try {
    return { bytes: await Deno.readFile(path), cached: true };
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
  } catch (err) {
    log(`could not cache the snapshot in ${CACHE_DIR} (${(err as Error).message}); continuing`);
  }
  return { bytes, cached: false };
}

/** Bump when the worker changes what goes into a snapshot. */
const SNAPSHOT_FORMAT = 2;

async function snapshotKey(): Promise<string> {
  const pkg = JSON.parse(await Deno.readTextFile(`${PYODIDE_DIR}package.json`));
  const runner = await Deno.readFile(new URL("./python/runner.py", import.meta.url));
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", runner));
  const hex = Array.from(hash.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${pkg.version}-${SNAPSHOT_FORMAT}-${hex}`;
}
