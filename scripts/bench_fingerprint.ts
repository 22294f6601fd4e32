/**
 * Two costs of durable sessions, in process. How long a checkpoint takes to find what changed in
 * a heap (`PageTracker.diff`): a 30 MiB image like an idle session's, a few hundred bytes changed
 * between checkpoints, once with the base mostly equal (blocks compared) and once with nothing
 * equal to it (all hashed). And what a restore pays to write an image into fresh wasm memory
 * (first touches fault pages in) against memory touched before, as a prepared worker's is.
 *
 *   deno run -A scripts/bench_fingerprint.ts
 */
import { PageTracker } from "../src/worker/checkpoint/delta.ts";

const BYTES = 30 << 20;

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[values.length >> 1];
}

for (const [what, differs] of [["mostly the base's", false], ["none of it the base's", true]]) {
  const base = new Uint8Array(BYTES);
  for (let i = 0; i < BYTES; i += 64) base[i] = i & 0xff;
  const image = new Uint8Array(BYTES);
  image.set(base);
  if (differs) { for (let i = 1; i < BYTES; i += 64) image[i] = 1; }
  const pages = new PageTracker(base);
  pages.prepare();
  const times: number[] = [];
  for (let round = 0; round < 12; round++) {
    for (let k = 0; k < 200; k++) image[(k * 7919 * 256 + round) % BYTES] ^= 1;
    const started = performance.now();
    pages.diff(image, false);
    times.push(performance.now() - started);
  }
  console.log(`30 MiB heap, ${what}: diff p50 ${median(times.slice(2)).toFixed(1)} ms`);
}

// What a restore pays for writing its image into memory never touched before, against memory
// faulted in already (as a prepared worker's is).
const image = new Uint8Array(BYTES).fill(7);
const fresh = () => new Uint8Array(new WebAssembly.Memory({ initial: BYTES / 65536 }).buffer);
const untouched: number[] = [];
const touched: number[] = [];
for (let round = 0; round < 5; round++) {
  const heap = fresh();
  let started = performance.now();
  heap.set(image);
  untouched.push(performance.now() - started);
  started = performance.now();
  heap.set(image);
  touched.push(performance.now() - started);
}
console.log(
  `writing 30 MiB into fresh wasm memory: p50 ${median(untouched).toFixed(1)} ms; into ` +
    `memory touched before: ${median(touched).toFixed(1)} ms`,
);
