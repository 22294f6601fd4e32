/**
 * A stored record that does not unseal as this session's own is refused: the call answers 410
 * `SessionLost` with a `checkpoint-rejected` security event, never a 500 and never a silently
 * fresh interpreter. Attacked by another program writing into the KV file between two runs.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";

const TOKEN = "durable-records-token-0123456789";
const POLICY = "limits:\n  poolSize: 1\n";

async function stopped(server: TestServer): Promise<void> {
  server.kill("SIGTERM");
  await server.exited();
}

/** Runs a first server that stores two sessions, lets `tamper` edit the KV file, then asks. */
async function afterTampering(
  tamper: (kv: Deno.Kv, a: string, b: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "moat-records-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  try {
    let a: string, b: string;
    {
      await using first = await startServer({ env, policyText: POLICY });
      a = await first.createSession();
      b = await first.createSession();
      await first.exec("owner = 'a'", { session: a, sync: true });
      await first.exec("owner = 'b'", { session: b, sync: true });
      await stopped(first);
    }
    const kv = await Deno.openKv(`${dir}/store.kv`);
    await tamper(kv, a, b);
    kv.close();
    await using second = await startServer({ env, policyText: POLICY });
    const { status, body } = await second.post(`/v1/sessions/${b}`, { code: "owner" });
    assert.equal(status, 410, JSON.stringify(body));
    assert.equal(body.error.name, "SessionLost");
    assert.match(second.stdout, /"kind":"checkpoint-rejected"/);
    assert.equal((await second.post(`/v1/sessions/${b}`, { code: "1" })).status, 404);
    // The untouched session is restored as it was.
    const other = await second.post(`/v1/sessions/${a}`, { code: "owner" });
    assert.equal(other.body.result, "a", JSON.stringify(other.body));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every KV entry whose key names `id`. */
async function entriesOf(kv: Deno.Kv, id: string) {
  const found: Deno.KvEntry<unknown>[] = [];
  for await (const e of kv.list({ prefix: [] })) if (e.key.includes(id)) found.push(e);
  return found;
}

Deno.test("a record whose sealed metadata is damaged is refused with 410", async () => {
  await afterTampering(async (kv, _a, b) => {
    let damaged = 0;
    for (const e of await entriesOf(kv, b)) {
      const manifest = e.value as { meta?: Uint8Array };
      if (manifest?.meta instanceof Uint8Array) {
        const meta = manifest.meta.slice();
        meta[meta.length >> 1] ^= 0xff;
        await kv.set(e.key, { ...manifest, meta });
        damaged++;
      }
    }
    assert.ok(damaged > 0, "the test found the session's metadata");
  });
});

Deno.test("a record copied from another session is refused with 410", async () => {
  await afterTampering(async (kv, a, b) => {
    for (const e of await entriesOf(kv, b)) await kv.delete(e.key);
    const copied = await entriesOf(kv, a);
    assert.ok(copied.length > 0, "the test found the other session's record");
    for (const e of copied) {
      await kv.set(e.key.map((part) => part === a ? b : part), e.value);
    }
  });
});

Deno.test("an older record of the session written back is refused with 410, not restored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-records-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n  hibernateAfterSeconds: 1\n";
  try {
    await using server = await startServer({ env, policyText });
    const id = await server.createSession();
    await server.exec("balance = 100", { session: id, sync: true });
    const kv = await Deno.openKv(`${dir}/store.kv`);
    const old = await entriesOf(kv, id);
    await server.exec("balance = 0", { session: id, sync: true });
    const state = async () =>
      (await server.request(`/v1/sessions/${id}`).then((r) => r.json())).state;
    for (let i = 0; i < 100 && await state() !== "hibernated"; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await state(), "hibernated");
    // Another program writes the older, validly sealed record back.
    for (const e of await entriesOf(kv, id)) await kv.delete(e.key);
    for (const e of old) await kv.set(e.key, e.value);
    kv.close();
    const { status, body } = await server.post(`/v1/sessions/${id}`, { code: "balance" });
    assert.equal(status, 410, JSON.stringify(body));
    assert.equal(body.error.name, "SessionLost");
    assert.match(body.error.message, /rolled back/);
    assert.match(server.stdout, /"kind":"checkpoint-rejected".*"reason":"rolled-back"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs `before` on a server, stops it, then `after` on a new one over the same KV store. */
async function acrossRestart(
  before: (server: TestServer) => Promise<string>,
  after: (server: TestServer, id: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "moat-records-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  try {
    let id: string;
    {
      await using first = await startServer({ env, policyText: POLICY });
      id = await before(first);
      await stopped(first);
    }
    await using second = await startServer({ env, policyText: POLICY });
    await after(second, id);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a session whose state cannot be checkpointed says so, and after a restart is 410", async () => {
  await acrossRestart(async (first) => {
    const id = await first.createSession();
    await first.exec("balance = 100", { session: id, sync: true });
    // A sys.modules whose methods are the session's own: taking the state would run them.
    const { body } = await first.post(`/v1/sessions/${id}`, {
      code: "import sys\nclass Mine(dict):\n    def __setitem__(self, k, v):\n" +
        "        raise RuntimeError('ran inside the checkpoint')\n" +
        "sys.modules = Mine(sys.modules)\nbalance = 0",
      checkpoint: "sync",
    });
    assert.equal(body.error, null, JSON.stringify(body));
    assert.equal(body.checkpoint.ok, false, JSON.stringify(body));
    assert.match(body.checkpoint.reason, /sys\.modules was replaced by an object of type 'Mine'/);
    assert.doesNotMatch(body.checkpoint.reason, /ran inside the checkpoint/);
    // Every answer says so while it lasts; the live session keeps its state.
    const next = await first.exec("balance", { session: id });
    assert.equal(next.result, 0);
    assert.equal((next as { checkpoint?: { ok: boolean } }).checkpoint?.ok, false);
    return id;
  }, async (second, id) => {
    // Not the older balance of 100, and not an empty session: lost, and said.
    const { status, body } = await second.post(`/v1/sessions/${id}`, { code: "balance" });
    assert.equal(status, 410, JSON.stringify(body));
    assert.equal(body.error.name, "SessionLost");
    assert.match(body.error.message, /could not be checkpointed/);
  });
});

Deno.test("a session that replaced builtins is still checkpointed and restored", async () => {
  await acrossRestart(async (first) => {
    const id = await first.createSession();
    const { body } = await first.post(`/v1/sessions/${id}`, {
      code: "import builtins\nbuiltins.dict = None\nkept = 7",
      checkpoint: "sync",
    });
    assert.equal(body.checkpoint?.ok, true, JSON.stringify(body));
    return id;
  }, async (second, id) => {
    const body = await second.exec("kept", { session: id });
    assert.equal(body.result, 7, JSON.stringify(body));
  });
});
