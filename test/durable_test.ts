/**
 * Durable sessions against the real server and a real store: a session's state outlives its
 * interpreter, its process (SIGTERM, kill -9) and hibernation, and what cannot be restored is
 * said, never replaced by a silent fresh interpreter.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";
import { DirectoryServer, fastmodSpec, writeLockIndex } from "./helpers/wheels.ts";
import { rssBytes } from "./helpers/proc.ts";

const TOKEN = "durable-test-token-0123456789";

/** Everything an agent's session holds: variables, code, objects, modules, a wheel, a file. */
const STATE = `
import json, math, fastmod
x = 41
def add(a):
    return a + x
class Point:
    def __init__(self, a, b):
        self.a, self.b = a, b
    def norm(self):
        return math.hypot(self.a, self.b)
p = Point(3, 4)
def counter():
    n = 0
    def step():
        nonlocal n
        n += 1
        return n
    return step
tick = counter()
tick(); tick()
class FinalAnswerException(BaseException):
    pass
class Tool:
    name = "lookup"
    def forward(self, key):
        return {"answer": 42}[key]
tools = {"lookup": Tool()}
locals().update(json.loads('{"task": "durable", "items": [1, 2, 3]}'))
with open("notes.txt", "w") as f:
    f.write("kept on disk")
big = list(range(100_000))
`;

/** Checks every part of STATE in one call. */
const CHECK = `
[add(1), p.norm(), tick(), tools["lookup"].forward("answer"), task, items,
 open("notes.txt").read(), len(big), fastmod.__name__, json.dumps({"a": 1}),
 issubclass(FinalAnswerException, BaseException)]
`;
const EXPECTED = [
  42,
  5,
  3,
  42,
  "durable",
  [1, 2, 3],
  "kept on disk",
  100_000,
  "fastmod",
  '{"a": 1}',
  true,
];

function policy(index: string, extra = ""): string {
  return `limits:\n  poolSize: 1\n${extra}packages: ${JSON.stringify({ index, allow: ["*"] })}\n`;
}

async function withIndex(): Promise<{ dir: string; source: DirectoryServer }> {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-" });
  await writeLockIndex(dir, [await fastmodSpec()]);
  return { dir, source: new DirectoryServer(dir) };
}

async function waitExit(server: TestServer): Promise<Deno.CommandStatus> {
  return await server.exited();
}

Deno.test("a session survives a restart (SIGTERM) with everything intact", async () => {
  const { dir, source } = await withIndex();
  await using _source = source;
  const store = `kv:${dir}/store.kv`;
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: store };
  let id: string;
  {
    await using first = await startServer({ policyText: policy(source.url), env });
    id = await first.createSession();
    const setup = await first.exec(STATE, { session: id, packages: ["fastmod"] });
    assert.equal(setup.error, null, setup.error?.message);
    await first.exec("x = 41", { session: id }); // a checkpoint is coalesced from calls
    first.kill("SIGTERM");
    assert.equal((await waitExit(first)).code, 0);
  }
  await using second = await startServer({ policyText: policy(source.url), env });
  const answer = await second.exec(CHECK, { session: id });
  assert.equal(answer.error, null, answer.error?.message);
  assert.deepEqual(answer.result, EXPECTED);
  assert.equal(answer.restored, true);
  assert.equal(typeof answer.restoreMs, "number");
  const info = await second.request(`/v1/sessions/${id}`).then((r) => r.json());
  assert.equal(info.state, "live");
  assert.ok(info.calls >= 3, `calls carried over: ${info.calls}`);
  // The next call is an ordinary one.
  const next = await second.exec("tick()", { session: id });
  assert.equal(next.result, 4);
  assert.equal(next.restored, undefined);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("after kill -9 a session has what its last completed checkpoint held", async () => {
  const { dir, source } = await withIndex();
  await using _source = source;
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  let id: string;
  {
    await using first = await startServer({ policyText: policy(source.url), env });
    id = await first.createSession();
    const saved = await first.exec(STATE, { session: id, packages: ["fastmod"], sync: true });
    assert.equal(saved.error, null, saved.error?.message);
    // A sync call says that its state is stored: its checkpoint's number, size and time.
    assert.equal(saved.checkpoint?.ok, true, JSON.stringify(saved.checkpoint));
    assert.ok(saved.checkpoint.seq >= 1 && saved.checkpoint.bytes > 0, JSON.stringify(saved));
    first.kill("SIGKILL");
    await waitExit(first);
  }
  await using second = await startServer({ policyText: policy(source.url), env });
  const answer = await second.exec(CHECK, { session: id });
  assert.equal(answer.error, null, answer.error?.message);
  assert.deepEqual(answer.result, EXPECTED);
  assert.equal(answer.restored, true);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the default session at / is durable too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  {
    await using first = await startServer({ env, policyText: "limits:\n  poolSize: 1\n" });
    await first.exec("remembered = 'at the root'", { sync: true });
    first.kill("SIGTERM");
    await waitExit(first);
  }
  await using second = await startServer({ env, policyText: "limits:\n  poolSize: 1\n" });
  assert.equal((await second.exec("remembered")).result, "at the root");
  await Deno.remove(dir, { recursive: true });
});

async function until(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!await ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("an idle session hibernates, gives its memory back, and restores on its next call", async () => {
  await using server = await startServer({
    env: { MOAT_TOKEN: TOKEN },
    policyText: "limits:\n  poolSize: 0\n  hibernateAfterSeconds: 1\n",
  });
  const id = await server.createSession();
  await server.exec("hoard = bytearray(120 * 1024 * 1024)\nhoard[-1] = 7\nkept = 'yes'", {
    session: id,
  });
  const live = await rssBytes(server.pid!);
  const state = async () =>
    (await server.request(`/v1/sessions/${id}`).then((r) => r.json())).state;
  await until("the session hibernates", async () => await state() === "hibernated");
  await until("its memory goes back", async () => await rssBytes(server.pid!) < live - 80e6);
  const answer = await server.exec("[kept, hoard[-1], len(hoard)]", { session: id });
  assert.deepEqual(answer.result, ["yes", 7, 120 * 1024 * 1024]);
  assert.equal(answer.restored, true);
  assert.equal(await state(), "live");
});

Deno.test("a session whose checkpoint is gone answers SessionLost, never a fresh interpreter", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-" });
  const store = `${dir}/store.kv`;
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${store}` };
  let id: string;
  {
    await using first = await startServer({ env, policyText: "limits:\n  poolSize: 1\n" });
    id = await first.createSession();
    await first.exec("secret_state = 1", { session: id, sync: true });
    first.kill("SIGTERM");
    await waitExit(first);
  }
  // Another program damages the store: every chunk of the session's checkpoint is rewritten.
  const kv = await Deno.openKv(store);
  let tampered = 0;
  for await (const entry of kv.list({ prefix: [] })) {
    if (entry.value instanceof Uint8Array && entry.key.includes(id)) {
      const bytes = entry.value.slice();
      bytes[bytes.length >> 1] ^= 0xff;
      await kv.set(entry.key, bytes);
      tampered++;
    }
  }
  kv.close();
  assert.ok(tampered > 0, "the test found the checkpoint's chunks");
  await using second = await startServer({ env, policyText: "limits:\n  poolSize: 1\n" });
  const { status, body } = await second.post(`/v1/sessions/${id}`, { code: "secret_state" });
  assert.equal(status, 410);
  assert.equal(body.error.name, "SessionLost");
  assert.match(body.error.message, /refused|authentication|damaged/);
  assert.match(second.stdout, /"kind":"checkpoint-rejected"/);
  // Said once: the id is gone, and the server is healthy.
  assert.equal((await second.post(`/v1/sessions/${id}`, { code: "1" })).status, 404);
  assert.equal((await second.request("/health", { auth: false })).status, 200);
  await Deno.remove(dir, { recursive: true });
});

/** The number of checkpoints stored so far, from `/metrics`. */
async function checkpointsStored(server: TestServer): Promise<number> {
  const res = await server.request("/metrics");
  const text = await res.text();
  const line = text.split("\n").find((l) => /^moat_checkpoints_total\{[^}]*ok/.test(l));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

Deno.test("a big session's calls wait for its checkpoint to be taken, not stored, and never pile up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n  memoryMb: 1024\n  checkpointDelayMs: 0\n";
  let id: string;
  {
    await using server = await startServer({ policyText, env });
    id = await server.createSession();
    assert.equal((await server.exec("x = 1", { session: id, sync: true })).error, null);
    const before = await checkpointsStored(server);
    // 150 MB that does not compress: writing its checkpoint to the store takes seconds.
    const big = await server.exec("import os\nDATA = os.urandom(150_000_000)", { session: id });
    assert.equal(big.error, null, big.error?.message);
    await new Promise((r) => setTimeout(r, 300)); // its checkpoint has started
    const next = await server.exec("len(DATA)", { session: id });
    assert.equal(next.result, 150_000_000);
    assert.equal(
      await checkpointsStored(server),
      before,
      "the call was answered only after the checkpoint's store write",
    );
    // More calls while that write goes on: each would start a checkpoint of 150 MB again. They
    // wait for the one write under way and coalesce into one checkpoint after it, so a store
    // slower than the calls never holds several copies of the session.
    for (let i = 1; i <= 4; i++) {
      assert.equal((await server.exec(`y = ${i}\ny`, { session: id })).result, i);
      await new Promise((r) => setTimeout(r, 300));
    }
    // A sync call waits for the writes under way, then stores the latest state.
    const last = await server.exec("y", { session: id, sync: true });
    assert.equal(last.checkpoint?.ok, true, JSON.stringify(last.checkpoint));
    const count = await checkpointsStored(server) - before;
    // The big one, at most one coalesced after it (two if a write landed between two of the
    // calls), and the sync one: never one per change.
    assert.ok(count <= 4, `${count} checkpoints stored for 6 changes`);
    server.kill("SIGKILL");
    await server.exited();
  }
  await using again = await startServer({ policyText, env });
  const restored = await again.exec("len(DATA), x, y", { session: id, timeoutMs: 60_000 });
  assert.equal(restored.error, null, JSON.stringify(restored.error));
  assert.deepEqual(restored.result, [150_000_000, 1, 4]);
  assert.equal(restored.restored, true);
  await Deno.remove(dir, { recursive: true });
});
