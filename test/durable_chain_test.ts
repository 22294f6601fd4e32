/**
 * A session's memory is stored as a chain of deltas, each against the checkpoint before it: a
 * small change to a big session writes kilobytes, the chain is compacted as it grows, and a link
 * that is missing or damaged loses the session with 410 and a security event, never silently.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";

const TOKEN = "durable-chain-token-0123456789";

async function stopped(server: TestServer, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  server.kill(signal);
  await server.exited();
}

/** The KV keys of a session's links. */
async function linksOf(path: string, id: string): Promise<Deno.KvKey[]> {
  const kv = await Deno.openKv(path);
  try {
    const keys: Deno.KvKey[] = [];
    for await (const e of kv.list({ prefix: [] })) {
      if (e.key[1] === "link" && e.key[2] === id) keys.push(e.key);
    }
    return keys;
  } finally {
    kv.close();
  }
}

Deno.test("twenty small changes to a big session write kilobytes each; kill -9 restores the last", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-chain-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n  memoryMb: 512\n";
  let id: string;
  let digest: string;
  try {
    {
      await using server = await startServer({ policyText, env });
      id = await server.createSession();
      // 48 MiB that does not compress: the first checkpoint stores all of it.
      const big = await server.exec(
        "import hashlib, random\nrandom.seed(7)\nBIG = random.randbytes(48 << 20)\n" +
          "steps = []\nhashlib.sha256(BIG).hexdigest()",
        { session: id, sync: true, timeoutMs: 60_000 },
      );
      assert.equal(big.error, null, big.error?.message);
      assert.equal(big.checkpoint?.ok, true, JSON.stringify(big.checkpoint));
      assert.ok(big.checkpoint.bytes > 40 << 20, JSON.stringify(big.checkpoint));
      digest = big.result;
      for (let i = 1; i <= 20; i++) {
        const step = await server.exec(`steps.append(${i})\nlen(steps)`, {
          session: id,
          sync: true,
        });
        assert.equal(step.result, i, JSON.stringify(step));
        assert.equal(step.checkpoint?.ok, true, JSON.stringify(step.checkpoint));
        assert.ok(
          step.checkpoint.bytes < 1 << 20,
          `step ${i} wrote ${step.checkpoint.bytes} bytes, not a delta against the last`,
        );
      }
      await stopped(server, "SIGKILL");
    }
    const links = await linksOf(`${dir}/store.kv`, id);
    assert.ok(links.length <= 10, `the chain was compacted: ${links.length} links`);
    await using again = await startServer({ policyText, env });
    const back = await again.exec("hashlib.sha256(BIG).hexdigest(), steps", {
      session: id,
      timeoutMs: 60_000,
    });
    assert.equal(back.error, null, back.error?.message);
    assert.equal(back.restored, true);
    assert.deepEqual(back.result, [digest, Array.from({ length: 20 }, (_, i) => i + 1)]);
    // And it goes on from there with deltas against what was restored (the restore itself
    // changes some memory: Python's start-up after the image is written), not the whole heap.
    const more = await again.exec("steps.append(21)", { session: id, sync: true });
    assert.ok(more.checkpoint?.ok && more.checkpoint.bytes < 4 << 20, JSON.stringify(more));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compaction while calls keep arriving loses nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-chain-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n  checkpointDelayMs: 0\n  checkpointMaxMs: 50\n";
  try {
    let id: string;
    {
      await using server = await startServer({ policyText, env });
      id = await server.createSession();
      await server.exec("log = []", { session: id, sync: true });
      // Coalesced checkpoints run between these calls; every eighth write compacts the chain.
      const clients = [0, 1, 2].map(async (c) => {
        for (let i = 0; i < 30; i++) {
          const answer = await server.exec(`log.append(${c * 100 + i})`, { session: id });
          assert.equal(answer.error, null, answer.error?.message);
          if (i % 7 === 0) await server.exec("len(log)", { session: id, sync: true });
        }
      });
      await Promise.all(clients);
      const last = await server.exec("len(log)", { session: id, sync: true });
      assert.equal(last.result, 90);
      assert.ok(last.checkpoint.seq > 10, `enough writes to compact: ${last.checkpoint.seq}`);
      await stopped(server, "SIGKILL");
    }
    await using again = await startServer({ policyText, env });
    const back = await again.exec("sorted(log)", { session: id });
    assert.equal(back.restored, true);
    const expected = [0, 1, 2].flatMap((c) => Array.from({ length: 30 }, (_, i) => c * 100 + i));
    assert.deepEqual(back.result, expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Stores a session with a few links, lets `tamper` edit them, and expects 410 on restore. */
async function afterTamperingLinks(
  tamper: (kv: Deno.Kv, keys: Deno.KvKey[], id: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "moat-chain-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n";
  try {
    let id: string, other: string;
    {
      await using first = await startServer({ env, policyText });
      id = await first.createSession();
      other = await first.createSession();
      await first.exec("secret = 'kept'", { session: other, sync: true });
      for (let i = 0; i < 3; i++) await first.exec(`n = ${i}`, { session: id, sync: true });
      await stopped(first);
    }
    const keys = await linksOf(`${dir}/store.kv`, id);
    assert.ok(keys.length >= 3, `the session has a chain: ${keys.length} links`);
    const kv = await Deno.openKv(`${dir}/store.kv`);
    await tamper(kv, keys, id);
    kv.close();
    await using second = await startServer({ env, policyText });
    const { status, body } = await second.post(`/v1/sessions/${id}`, { code: "n" });
    assert.equal(status, 410, JSON.stringify(body));
    assert.equal(body.error.name, "SessionLost");
    assert.match(second.stdout, /"kind":"checkpoint-rejected"/);
    const kept = await second.post(`/v1/sessions/${other}`, { code: "secret" });
    assert.equal(kept.body.result, "kept", JSON.stringify(kept.body));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a missing link of a chain is 410 SessionLost with a security event", async () => {
  await afterTamperingLinks(async (kv, keys) => {
    // The middle link's manifest: as if another program deleted it.
    await kv.delete(keys.toSorted((a, b) => Number(a[3]) - Number(b[3]))[1]);
  });
});

Deno.test("a damaged link of a chain is 410 SessionLost with a security event", async () => {
  await afterTamperingLinks(async (kv, _keys, id) => {
    let damaged = 0;
    for await (const e of kv.list<Uint8Array>({ prefix: [] })) {
      if (e.key[1] !== "linkc" || e.key[2] !== id || !(e.value instanceof Uint8Array)) continue;
      const bytes = e.value.slice();
      bytes[bytes.length >> 1] ^= 0xff;
      await kv.set(e.key, bytes);
      damaged++;
    }
    assert.ok(damaged > 0, "the test found the links' bytes");
  });
});
