import assert from "node:assert/strict";
import { PolicySchema } from "../policy/schema.ts";
import { baseKey, BASES_KEPT, pruneBases } from "./delta_base.ts";

Deno.test("old checkpoint bases are pruned: the one in use and the most recent others stay", async () => {
  const dir = `${await Deno.makeTempDir({ prefix: "moat-bases-" })}/`;
  try {
    const names = Array.from(
      { length: 7 },
      (_, i) => `base-${i.toString(16).padStart(24, "0")}.bin`,
    );
    for (const [i, name] of names.entries()) {
      await Deno.writeFile(`${dir}${name}`, new Uint8Array(8));
      const t = new Date(Date.UTC(2026, 0, 1 + i)); // base 6 is the newest, 0 the oldest
      await Deno.utime(`${dir}${name}`, t, t);
    }
    await Deno.writeTextFile(`${dir}store.kv`, "not a base");
    // The oldest is the one in use: it is kept, and marked as just used.
    await pruneBases(dir, `${dir}${names[0]}`);
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(
      left.toSorted(),
      ["store.kv", names[0], names[6], names[5], names[4]].toSorted(),
    );
    assert.equal(left.filter((n) => n.startsWith("base-")).length, BASES_KEPT);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a base is cached per boot options: network hosts, memory and preload each make their own", async () => {
  const limits = PolicySchema.parse({}).limits;
  const snapshot = new Uint8Array([1, 2, 3]);
  const plain = await baseKey({ limits, snapshot });
  assert.equal(await baseKey({ limits, snapshot, network: [] }), plain);
  const net = await baseKey({ limits, snapshot, network: ["b.example", "a.example"] });
  assert.notEqual(net, plain);
  assert.equal(await baseKey({ limits, snapshot, network: ["a.example", "b.example"] }), net);
  assert.notEqual(await baseKey({ limits, snapshot, network: ["a.example"] }), net);
  assert.notEqual(await baseKey({ limits: { ...limits, memoryMb: 256 }, snapshot }), plain);
});
