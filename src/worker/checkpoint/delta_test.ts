import assert from "node:assert/strict";
import fc from "fast-check";
import { constants, zstdCompressSync } from "node:zlib";
import {
  applyDelta,
  CHUNK_BYTES,
  decompress,
  DeltaError,
  deltaInfo,
  diffImage,
  mergeDeltas,
  PageTracker,
} from "./delta.ts";

function image(chunks: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(chunks * CHUNK_BYTES);
  for (let i = 0; i < bytes.length; i += 97) bytes[i] = (i * seed) & 0xff;
  return bytes;
}

Deno.test("an unchanged image is a delta of no chunks", () => {
  const base = image(8, 7);
  const delta = diffImage(base, base.slice());
  assert.deepEqual(deltaInfo(delta), {
    imageBytes: base.length,
    chunks: 0,
    chunkBytes: CHUNK_BYTES,
  });
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
  assert.deepEqual(deltaInfo(delta), {
    imageBytes: grown.length,
    chunks: 1,
    chunkBytes: CHUNK_BYTES,
  });
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

Deno.test("older checkpoints inflate, and output past the limit or a corrupted frame is refused", async () => {
  const bytes = image(4, 11);
  const packed = new Uint8Array(
    zstdCompressSync(bytes, { params: { [constants.ZSTD_c_checksumFlag]: 1 } }),
  );
  assert.ok(packed.length < bytes.length / 4);
  assert.deepEqual(await decompress(packed, bytes.length), bytes);
  await assert.rejects(decompress(packed, bytes.length - 1), DeltaError);
  const corrupt = packed.slice();
  corrupt[corrupt.length - 6] ^= 0xff; // inside the checksum
  await assert.rejects(decompress(corrupt, bytes.length), DeltaError);
});

Deno.test("a tracker keeps only what changed since its last delta, and the chain rebuilds each image", () => {
  const base = image(16, 5);
  const pages = new PageTracker(base);
  const first = base.slice();
  first[2 * CHUNK_BYTES] ^= 1;
  const d1 = pages.diff(first, false);
  assert.equal(deltaInfo(d1).chunks, 1, "the first delta is against the base");
  const second = new Uint8Array(20 * CHUNK_BYTES);
  second.set(first);
  second[9 * CHUNK_BYTES + 7] ^= 0x80; // one bit, high in its word
  second[18 * CHUNK_BYTES] = 3; // grown memory
  const d2 = pages.diff(second, false);
  assert.equal(deltaInfo(d2).chunks, 2, "chunk 2 changed before, not since");
  const third = second.slice();
  third.set(base.subarray(2 * CHUNK_BYTES, 3 * CHUNK_BYTES), 2 * CHUNK_BYTES); // back to the base
  const d3 = pages.diff(third, false);
  assert.equal(deltaInfo(d3).chunks, 1, "a chunk that went back to the base is a change too");
  const rebuilt = applyDelta(base, d1);
  const grown = new Uint8Array(deltaInfo(d3).imageBytes);
  grown.set(rebuilt);
  for (const d of [d2, d3]) applyDelta(grown, d, grown);
  assert.deepEqual(grown, third);
  assert.deepEqual(applyDelta(base, mergeDeltas([d1, d2, d3])), third, "merged, the same image");
  assert.equal(deltaInfo(pages.diff(third, true)).chunks, 2, "full: everything off the base");
});

Deno.test("a restored tracker diffs against the restored image", () => {
  const base = image(8, 9);
  const next = base.slice();
  next[CHUNK_BYTES] ^= 1;
  next[5 * CHUNK_BYTES] ^= 1;
  const delta = diffImage(base, next);
  const pages = new PageTracker(base);
  pages.restored(next, [delta]);
  assert.equal(pages.generation, 0);
  assert.equal(deltaInfo(pages.diff(next, false)).chunks, 0);
  const after = next.slice();
  after[7 * CHUNK_BYTES] ^= 1;
  assert.deepEqual(Array.from(new Uint32Array(pages.diff(after, false).buffer, 16, 1)), [7]);
});

Deno.test("merging keeps each chunk as the last delta wrote it", () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.nat(7), { maxLength: 4 }), { minLength: 1, maxLength: 6 }),
      (steps) => {
        const base = image(8, 3);
        let now = base.slice();
        const deltas: Uint8Array[] = [];
        steps.forEach((chunks, i) => {
          const next = now.slice();
          for (const c of chunks) next[c * CHUNK_BYTES + i] ^= 0xff;
          deltas.push(diffImage(now, next));
          now = next;
        });
        assert.deepEqual(applyDelta(base, mergeDeltas(deltas)), now);
      },
    ),
  );
});

Deno.test("blocks still equal to the base and grown zero memory are told apart from changes", () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.nat(96 * 1024 - 1), { maxLength: 6 }), { minLength: 1, maxLength: 5 }),
      fc.boolean(),
      (steps, grow) => {
        const base = image(256, 13); // 64 KiB: four blocks
        const pages = new PageTracker(base);
        let before = new Uint8Array(96 * 1024);
        before.set(base);
        for (const [i, offsets] of steps.entries()) {
          const next = before.slice();
          for (const at of offsets) if (grow || at < base.length) next[at] ^= 1 + i;
          const delta = pages.diff(next, false);
          const grown = new Uint8Array(next.length);
          grown.set(before);
          assert.deepEqual(applyDelta(grown, delta), next);
          assert.deepEqual(delta, diffImage(before, next), "exactly the chunks that changed");
          before = next;
        }
      },
    ),
  );
});
