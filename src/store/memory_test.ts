import assert from "node:assert/strict";
import { storeContract } from "../../test/helpers/store_contract.ts";
import { MemoryBackend } from "./memory.ts";
import { openStore } from "./open.ts";

Deno.test("the memory store keeps the store contract", async (t) => {
  const backend = new MemoryBackend();
  await storeContract(t, { open: () => Promise.resolve(backend), prefixes: false });
});

Deno.test("each memory store starts empty: nothing survives", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    const first = await openStore({ setting: { kind: "memory" }, cacheDir });
    await first.putBase("h", new Uint8Array([1]));
    const second = await openStore({ setting: { kind: "memory" }, cacheDir });
    assert.equal(await second.hasBase("h"), false);
    assert.deepEqual([...Deno.readDirSync(cacheDir)], [], "memory writes no key file");
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});
