import assert from "node:assert/strict";
import { sha256Hex } from "../digest.ts";
import { WheelCache } from "./cache.ts";

/** Bytes that do not compress (getRandomValues fills at most 64 KiB at a time). */
function noise(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

async function wheel(
  n: number,
  kb = 100,
): Promise<{ name: string; sha: string; bytes: Uint8Array }> {
  const bytes = noise(kb * 1024);
  return { name: `w${n}-1.0-py3-none-any.whl`, sha: await sha256Hex(bytes), bytes };
}

async function onDisk(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("the wheel cache keeps to its budget, least recently used out first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-wheels-" });
  try {
    const cache = new WheelCache(dir, () => {}, 250 * 1024);
    const [a, b, c] = [await wheel(1), await wheel(2), await wheel(3)];
    await cache.put(a.name, a.sha, a.bytes);
    await cache.put(b.name, b.sha, b.bytes);
    assert.ok(await cache.get(a.name, a.sha)); // a is now more recent than b
    await cache.put(c.name, c.sha, c.bytes);
    assert.deepEqual(await onDisk(dir), [a.name, c.name].sort());
    assert.ok(cache.diskBytes <= 250 * 1024);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a wheel an install holds is kept past the budget until it is released", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-wheels-" });
  try {
    const cache = new WheelCache(dir, () => {}, 150 * 1024);
    const [a, b] = [await wheel(1), await wheel(2)];
    const hold = new Set<string>();
    await cache.put(a.name, a.sha, a.bytes, hold);
    await cache.put(b.name, b.sha, b.bytes);
    // b is newer, but a is held: b goes.
    assert.deepEqual(await onDisk(dir), [a.name]);
    const other = new Set<string>();
    await cache.put(b.name, b.sha, b.bytes, other);
    assert.deepEqual(await onDisk(dir), [a.name, b.name].sort()); // both held: over the budget
    await cache.release(hold);
    assert.deepEqual(await onDisk(dir), [b.name]);
    await cache.release(other);
    assert.deepEqual(await onDisk(dir), [b.name]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a new process trims a cache directory an earlier one left over budget", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-wheels-" });
  try {
    const big = new WheelCache(dir);
    const wheels = [await wheel(1), await wheel(2), await wheel(3)];
    for (const w of wheels) await big.put(w.name, w.sha, w.bytes);
    await Deno.utime(`${dir}/${wheels[0].name}`, new Date(1000), new Date(1000));
    const small = new WheelCache(dir, () => {}, 250 * 1024);
    const d = await wheel(4, 10);
    await small.put(d.name, d.sha, d.bytes);
    assert.ok(!(await onDisk(dir)).includes(wheels[0].name), "the oldest wheel stayed");
    assert.ok(small.diskBytes <= 250 * 1024);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
