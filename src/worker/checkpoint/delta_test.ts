import assert from "node:assert/strict";
import fc from "fast-check";
import {
  applyDelta,
  CHUNK_BYTES,
  compress,
  decompress,
  DeltaError,
  deltaInfo,
  diffImage,
} from "./delta.ts";

function image(chunks: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(chunks * CHUNK_BYTES);
  for (let i = 0; i < bytes.length; i += 97) bytes[i] = (i * seed) & 0xff;
  return bytes;
}

Deno.test("an unchanged image is a delta of no chunks", () => {
  const base = image(8, 7);
  const delta = diffImage(base, base.slice());
  assert.deepEqual(deltaInfo(delta), { imageBytes: base.length, chunks: 0 });
  assert.equal(delta.length, 16);
  assert.deepEqual(applyDelta(base, delta), base);
});

Deno.test("only the chunks that changed are kept, and applying them rebuilds the image", () => {
  const base = image(8, 7);
  const next = base.slice();
  next[3 * CHUNK_BYTES + 5] ^= 1;
  next[6 * CHUNK_BYTES] ^= 1;
  const delta = diffImage(base, next);
  assert.equal(deltaInfo(delta).chunks, 2);
  assert.equal(delta.length, 16 + 8 + 2 * CHUNK_BYTES);
  assert.deepEqual(applyDelta(base, delta), next);
});

Deno.test("memory that grew past the base costs only its non-zero chunks", () => {
  const base = image(4, 3);
  const grown = new Uint8Array(10 * CHUNK_BYTES);
  grown.set(base);
  grown[8 * CHUNK_BYTES + 1] = 9;
  const delta = diffImage(base, grown);
  assert.deepEqual(deltaInfo(delta), { imageBytes: grown.length, chunks: 1 });
  assert.deepEqual(applyDelta(base, delta), grown);
});

Deno.test("an image shorter than the base, or not a whole number of chunks, rebuilds exactly", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 * CHUNK_BYTES }),
      fc.integer({ min: 1, max: 5 * CHUNK_BYTES }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (baseLength, imageLength, edits) => {
        const base = new Uint8Array(baseLength).map((_, i) => i % 251);
        const next = new Uint8Array(imageLength).map((_, i) => (i < baseLength ? i % 251 : 0));
        for (const e of edits) next[e % imageLength] ^= 0x5a;
        assert.deepEqual(applyDelta(base, diffImage(base, next)), next);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("an unaligned view compares correctly too", () => {
  const backing = new Uint8Array(3 * CHUNK_BYTES + 1);
  const base = backing.subarray(1);
  const next = base.slice();
  next[CHUNK_BYTES + 2] = 200;
  const delta = diffImage(base, next);
  assert.equal(deltaInfo(delta).chunks, 1);
  assert.deepEqual(applyDelta(base, delta), next);
});

Deno.test("a truncated or foreign delta is refused with a DeltaError", () => {
  const base = image(2, 5);
  const next = base.slice();
  next[0] ^= 1;
  const delta = diffImage(base, next);
  assert.throws(() => applyDelta(base, delta.subarray(0, delta.length - 1)), DeltaError);
  assert.throws(() => applyDelta(base, new Uint8Array(32)), DeltaError);
});

Deno.test("compression round-trips, and refuses output past the limit or corrupted input", async () => {
  const bytes = image(4, 11);
  const packed = await compress(bytes);
  assert.ok(packed.length < bytes.length / 4);
  assert.deepEqual(await decompress(packed, bytes.length), bytes);
  await assert.rejects(decompress(packed, bytes.length - 1), DeltaError);
  const corrupt = packed.slice();
  corrupt[corrupt.length - 6] ^= 0xff; // inside the CRC
  await assert.rejects(decompress(corrupt, bytes.length), DeltaError);
});
