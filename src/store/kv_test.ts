import assert from "node:assert/strict";
import { storeContract } from "../../test/helpers/store_contract.ts";
import { KvBackend } from "./kv.ts";
import { openStore } from "./open.ts";
import { StoreUnavailable } from "./store.ts";
import { kvOffThread } from "./thread.ts";

async function chunkCount(path: string): Promise<number> {
  const kv = await Deno.openKv(path);
  try {
    let n = 0;
    for await (const e of kv.list({ prefix: ["moat", "cpc"] })) n += e.key.length > 0 ? 1 : 0;
    return n;
  } finally {
    kv.close();
  }
}

Deno.test("the Deno KV store keeps the store contract", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await storeContract(t, {
      open: (prefix = "moat") => KvBackend.open(`${dir}/store.kv`, prefix),
      prefixes: true,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the Deno KV store in its own worker keeps the store contract", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await storeContract(t, {
      open: (prefix = "moat") => kvOffThread(`${dir}/store.kv`, prefix),
      prefixes: true,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a replaced or deleted KV checkpoint leaves no chunks behind", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/store.kv`;
  const store = await openStore({ setting: { kind: "kv", path }, cacheDir: `${dir}/cache/` });
  try {
    const meta = {
      mode: "persistent" as const,
      created: 1,
      lastUsed: 2,
      calls: 3,
      packages: [],
      seq: 1,
      baseId: "b",
    };
    const delta = crypto.getRandomValues(new Uint8Array(65536)).slice();
    const big = new Uint8Array(1 << 20).map((_, i) => delta[i % 65536] ^ (i >> 16));
    await store.putCheckpoint("s", { meta, delta: big });
    const first = await chunkCount(path);
    assert.ok(first > 1, `a 1 MB checkpoint spans several chunks (${first})`);
    await store.putCheckpoint("s", { meta: { ...meta, seq: 2 }, delta: big });
    assert.equal(await chunkCount(path), first, "the old version's chunks are removed");
    await store.deleteSession("s");
    assert.equal(await chunkCount(path), 0);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a KV store on one machine generates its key once, readable only by its owner", async () => {
  const dir = await Deno.makeTempDir();
  const cacheDir = `${dir}/cache/`;
  try {
    const meta = { mode: "persistent" as const, created: 1, lastUsed: 1, calls: 0, packages: [] };
    const first = await openStore({ setting: { kind: "kv" }, cacheDir });
    await first.putCheckpoint("s", {
      meta: { ...meta, seq: 0, baseId: "b" },
      delta: new Uint8Array([7]),
    });
    await first.close();
    const info = await Deno.stat(`${cacheDir}store.key`);
    assert.equal(info.mode! & 0o777, 0o600);
    const again = await openStore({ setting: { kind: "kv" }, cacheDir });
    try {
      assert.deepEqual((await again.getCheckpoint("s"))?.delta, new Uint8Array([7]));
    } finally {
      await again.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a KV file that cannot be opened is reported as StoreUnavailable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      openStore({
        setting: { kind: "kv", path: `${dir}/missing/dir/store.kv` },
        cacheDir: `${dir}/c/`,
      }),
      StoreUnavailable,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
