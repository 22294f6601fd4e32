import assert from "node:assert/strict";
import {
  CHECKPOINT_VERSION,
  CheckpointFormatError,
  type CheckpointMeta,
  packCheckpoint,
  readPrefix,
  unpackCheckpoint,
} from "./format.ts";

const META: CheckpointMeta = {
  version: CHECKPOINT_VERSION,
  baseId: "ab".repeat(32),
  headerSection: 0,
  lost: [],
  packages: {},
  files: [],
  removed: [],
  streams: [],
  dylibs: [],
  table: { length: 0, bootLength: 0, entries: [] },
};

/** Random bytes in 64 KiB draws (getRandomValues' limit). */
function random(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  }
  return out;
}

Deno.test("a checkpoint reads back as it was packed, stored as it is (the sealer compresses)", async (t) => {
  const cases: [string, Uint8Array[]][] = [
    ["small sections", [new Uint8Array([1, 2, 3]), new Uint8Array(0)]],
    ["a big body of random data", [new Uint8Array(64), random(5 << 20)]],
  ];
  for (const [what, sections] of cases) {
    await t.step(what, async () => {
      const bytes = packCheckpoint(META, sections);
      assert.equal(readPrefix(bytes).baseId, META.baseId);
      assert.equal(bytes[76], 0, "stored as it is");
      const back = await unpackCheckpoint(bytes, 64 << 20);
      assert.deepEqual(back.meta, META);
      assert.equal(back.sections.length, sections.length);
      back.sections.forEach((s, i) => assert.deepEqual(s, sections[i], `section ${i}`));
    });
  }
});

Deno.test("a checkpoint cut short, too big or not one is refused by name", async () => {
  const bytes = packCheckpoint(META, [new Uint8Array(64), random(5 << 20)]);
  await assert.rejects(unpackCheckpoint(bytes.subarray(0, bytes.length - 10), 64 << 20), {
    name: "CheckpointFormatError",
    message: /cut short/,
  });
  await assert.rejects(unpackCheckpoint(bytes, 1 << 20), /more than 1048576 bytes/);
  const other = bytes.slice();
  other[0] ^= 1;
  await assert.rejects(unpackCheckpoint(other, 64 << 20), CheckpointFormatError);
});
