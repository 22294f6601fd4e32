/**
 * The image a server's checkpoints are deltas against. Diffing against the boot snapshot keeps
 * every chunk a session's own boot changes (the runner, the lockdown, the warm-up: about 200 of
 * 480); diffing against an idle session's memory keeps only what the calls changed, so an empty
 * session's checkpoint is kilobytes. The base is made once per boot snapshot and pool options,
 * cached on disk, and stored once (content-addressed) in the session store.
 */
import { sha256Hex } from "../digest.ts";
import { CACHE_DIR } from "../paths.ts";
import { applyDelta } from "../worker/checkpoint/delta.ts";
import { messageOf } from "../worker/errors.ts";
import { Interpreter, type InterpreterOptions } from "./interpreter.ts";
import { snapshotId } from "./base_check.ts";

function shared(bytes: Uint8Array): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  view.set(bytes);
  return view;
}

/**
 * What the pool boots with decides the base: the snapshot, the preload, the mounts, the memory
 * cap, and the network hosts (with any, the lockdown installs Python's HTTP layer at boot). A base
 * made for other options still restores correctly, but every checkpoint then carries the
 * difference: megabytes instead of kilobytes, and restores three times as slow.
 */
export async function baseKey(
  options: InterpreterOptions & { snapshot: Uint8Array },
): Promise<string> {
  const parts = {
    snapshot: await snapshotId(options.snapshot),
    preload: (options.preload ?? []).map((w) => w.fileName),
    mounts: (options.mounts ?? []).map((m) => [m.path, m.bytes?.length ?? -1]),
    memoryMb: options.limits.memoryMb,
    network: [...options.network ?? []].sort(),
  };
  return (await sha256Hex(new TextEncoder().encode(JSON.stringify(parts)))).slice(0, 24);
}

/**
 * Boots one session with the pool's options, takes its memory and returns it in Pyodide's
 * snapshot layout (in a SharedArrayBuffer every worker reads without a copy), with its id. Read
 * from the cache when this snapshot and these options made one before, so the id is stable.
 */
export async function loadDeltaBase(
  options: InterpreterOptions & { snapshot: Uint8Array },
  log: (line: string) => void = () => {},
  cacheDir = CACHE_DIR,
): Promise<{ bytes: Uint8Array; id: string }> {
  const path = `${cacheDir}base-${await baseKey(options)}.bin`;
  try {
    const bytes = shared(await Deno.readFile(path));
    await pruneBases(cacheDir, path, log);
    return { bytes, id: await snapshotId(bytes) };
  } catch {
    // not cached yet
  }
  const boot = options.snapshot;
  const interpreter = await Interpreter.start({ ...options, checkpoint: undefined });
  let bytes: Uint8Array;
  try {
    // A fresh interpreter's first delta is against what it booted from: the boot snapshot.
    const taken = await interpreter.checkpoint(await snapshotId(boot));
    const start = new Uint32Array(boot.buffer, boot.byteOffset, 2)[1];
    const image = applyDelta(boot.subarray(start), taken.delta);
    bytes = new Uint8Array(new SharedArrayBuffer(start + image.length));
    bytes.set(boot.subarray(0, start));
    bytes.set(image, start);
  } finally {
    interpreter.terminate();
  }
  try {
    const tmp = `${path}.${crypto.randomUUID()}.tmp`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
    await pruneBases(cacheDir, path, log);
  } catch (err) {
    log(`could not cache the checkpoint base in ${cacheDir} (${messageOf(err)}); continuing`);
  }
  return { bytes, id: await snapshotId(bytes) };
}

/** Bases kept in the cache: the one in use and the most recently used others. */
export const BASES_KEPT = 4;

/**
 * Keeps the cache from growing with every policy or snapshot a checkout ever ran (30 MB each):
 * marks `current` as just used and removes all but the `BASES_KEPT` most recently used bases.
 * Safe: a server reads its base once at start-up, and the session store holds its own copy of
 * every base a checkpoint names.
 */
export async function pruneBases(
  cacheDir: string,
  current: string,
  log: (line: string) => void = () => {},
): Promise<void> {
  try {
    const now = new Date();
    await Deno.utime(current, now, now);
    const bases: { path: string; used: number }[] = [];
    for await (const entry of Deno.readDir(cacheDir)) {
      if (!entry.isFile || !/^base-[0-9a-f]+\.bin$/.test(entry.name)) continue;
      const path = `${cacheDir}${entry.name}`;
      bases.push({ path, used: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    }
    bases.sort((a, b) => b.used - a.used);
    for (const { path } of bases.slice(BASES_KEPT)) {
      if (path !== current) await Deno.remove(path).catch(() => {});
    }
  } catch (err) {
    log(`could not prune old checkpoint bases in ${cacheDir} (${messageOf(err)}); continuing`);
  }
}
