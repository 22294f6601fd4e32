/**
 * Durable sessions across instances: real servers sharing one real Redis (started here on a
 * loopback port, or MOAT_TEST_REDIS_URL). A session runs on one instance at a time, any instance
 * can serve it, a crashed instance's sessions move on once its lease expires, and a Redis that
 * goes away never fails a call.
 */
import assert from "node:assert/strict";
import { LEASE_TTL_MS } from "../src/session/checkpoints.ts";
import { redisUnavailable, startRedis, type TestRedis } from "./helpers/redis.ts";
import {
  type Cluster,
  type ExecAnswer,
  startServer,
  startServers,
  type TestServer,
} from "./helpers/server.ts";

const skip = await redisUnavailable();
if (skip) console.warn(`skipping the durable Redis tests: ${skip}`);

const TOKEN = "durable-redis-token-0123456789";
const STORE_KEY = "durable-redis-store-key-0123456789";
const POLICY = "limits:\n  poolSize: 1\n";

/** The environment of one instance of a deployment sharing `redis`. */
function instanceEnv(redis: TestRedis, prefix: string, instance: string): Record<string, string> {
  return {
    MOAT_STORE: redis.url,
    MOAT_STORE_KEY: STORE_KEY,
    MOAT_STORE_PREFIX: prefix,
    MOAT_TOKEN: TOKEN,
    MOAT_INSTANCE_ID: instance,
  };
}

/** Several instances on one store, started at once, all stopped at the end. */

async function startCluster(redis: TestRedis, instances: string[]): Promise<Cluster> {
  // A prefix of its own, so a Redis named by MOAT_TEST_REDIS_URL holds nothing from other runs.
  const prefix = `moat-test-${crypto.randomUUID().slice(0, 8)}`;
  return await startServers(
    instances.map((id) => ({ env: instanceEnv(redis, prefix, id), policyText: POLICY })),
  );
}

/** Executes on `server`, failing with the status, body and the server's stderr when not 200. */
async function call(
  server: TestServer,
  session: string,
  code: string,
  options: { timeoutMs?: number; sync?: boolean } = {},
): Promise<ExecAnswer> {
  const { status, body } = await server.post(`/v1/sessions/${session}`, {
    code,
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.sync ? { checkpoint: "sync" } : {}),
  });
  if (status !== 200) {
    throw new Error(
      `HTTP ${status} from ${server.url} for ${JSON.stringify(code)}: ${JSON.stringify(body)}\n` +
        `server stderr:\n${server.stderr}`,
    );
  }
  return body;
}

/**
 * Repeats a sync call (`send`) until its checkpoint is stored again (its answer says nothing of
 * it), for at most 15 s after a store came back; returns that answer.
 */
async function untilStored(send: () => Promise<ExecAnswer>): Promise<ExecAnswer> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answer = await send();
    if (answer.checkpoint?.ok !== false) return answer;
    assert.ok(Date.now() < deadline, `still failing: ${JSON.stringify(answer.checkpoint)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Fails with Python's error instead of comparing a null result. */
function ok(answer: ExecAnswer, what: string): ExecAnswer {
  assert.equal(answer.error, null, `${what}: ${JSON.stringify(answer.error)}`);
  return answer;
}

// deno-lint-ignore no-explicit-any
async function details(server: TestServer, session: string): Promise<any> {
  const res = await server.request(`/v1/sessions/${session}`);
  assert.equal(res.status, 200, `GET /v1/sessions/${session} on ${server.url}`);
  return await res.json();
}

/** A small seeded generator, so a failing route can be replayed from the seed it prints. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test({
  name: "a session created on one instance can be called on another at once",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startCluster(redis, ["inst-a", "inst-b"]);
    const [a, b] = cluster.servers;
    const id = await a.createSession();
    assert.equal(ok(await call(b, id, "x = 1\nx"), "first call, on B").result, 1);
    assert.equal(ok(await call(a, id, "x + 1"), "second call, on A").result, 2);
  },
});

Deno.test({
  name: "a sync call that outlasts the checkpoint delay still lets another instance take over",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startCluster(redis, ["inst-a", "inst-b"]);
    const [a, b] = cluster.servers;
    const id = await a.createSession();
    // The checkpoint scheduled at creation comes due while this call runs, and queues behind it.
    const code = "import time\ntime.sleep(0.6)\nx = 1";
    assert.equal(ok(await call(a, id, code, { sync: true }), "on A").checkpoint?.ok, true);
    const answer = ok(await call(b, id, "x + 1", { timeoutMs: 15_000 }), "on B");
    assert.equal(answer.result, 2);
    assert.equal(answer.restored, true);
  },
});

Deno.test({
  name: "calls to one session alternating between two instances each see the previous state",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startCluster(redis, ["inst-a", "inst-b"]);
    const [a, b] = cluster.servers;
    const id = await a.createSession();
    for (let i = 0; i < 6; i++) {
      const server = i % 2 ? b : a;
      const code = i === 0 ? "x = 1\nx" : "x += 1\nx";
      // The first call is stored at once: a session no instance has checkpointed yet is the
      // previous test's subject.
      const answer = ok(await call(server, id, code, { sync: i === 0 }), `call ${i}`);
      assert.equal(answer.result, i + 1, `call ${i} on ${i % 2 ? "B" : "A"}`);
      if (i > 0) assert.equal(answer.restored, true, `call ${i} restored the other's checkpoint`);
      assert.equal((await details(server, id)).instance, i % 2 ? "inst-b" : "inst-a");
    }
  },
});

Deno.test({
  name: "calls sent to two instances at once neither interleave nor run twice",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startCluster(redis, ["inst-a", "inst-b"]);
    const [a, b] = cluster.servers;
    const id = await a.createSession();
    ok(await call(a, id, "import time\nseen = []", { sync: true }), "setup");
    // Each call reads, waits, then writes: two runs at once on two copies would lose one.
    const step = (i: number) =>
      `n = len(seen)\ntime.sleep(0.05)\nseen = seen + [${i}]\n(n, len(seen))`;
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => call(i < 5 ? a : b, id, step(i), { timeoutMs: 60_000 })),
    );
    answers.forEach((answer, i) => ok(answer, `call ${i}`));
    const lengths = answers.map((answer) => answer.result[1]).sort((x, y) => x - y);
    assert.deepEqual(lengths, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "each call saw all before it");
    for (const answer of answers) assert.equal(answer.result[1], answer.result[0] + 1);
    for (const server of [a, b]) {
      const seen: number[] = ok(await call(server, id, "seen"), "final read").result;
      assert.equal(seen.length, 10, `seen: ${JSON.stringify(seen)}`);
      assert.deepEqual([...seen].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
  },
});

Deno.test({
  name:
    "after kill -9 of one instance mid-call, the other takes the session over with its last checkpoint",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startCluster(redis, ["inst-a", "inst-b"]);
    const [a, b] = cluster.servers;
    const id = await a.createSession();
    ok(await call(a, id, "x = 'checkpointed'\nimport time", { sync: true }), "setup");
    const sleeping = call(a, id, "time.sleep(5)\nx = 'never checkpointed'", { timeoutMs: 20_000 })
      .catch((err) => err);
    const deadline = Date.now() + 5_000;
    while (!(await details(a, id)).busy) {
      assert.ok(Date.now() < deadline, "the sleeping call never started on A");
      await new Promise((r) => setTimeout(r, 50));
    }
    a.kill("SIGKILL");
    await a.exited();
    const killed = performance.now();
    assert.ok(await sleeping instanceof Error, "the call A was running has no answer");

    // Before the lease expires, a call that cannot wait long enough is told to try again.
    const early = await b.post(`/v1/sessions/${id}`, { code: "x", timeoutMs: 1_000 });
    assert.equal(early.status, 503, JSON.stringify(early.body));
    assert.equal(early.body.error.name, "Unavailable");

    const answer = ok(await call(b, id, "x", { timeoutMs: 30_000 }), "takeover");
    const waited = performance.now() - killed;
    assert.equal(answer.result, "checkpointed");
    assert.equal(answer.restored, true);
    assert.ok(waited < LEASE_TTL_MS + 5_000, `took over ${Math.round(waited)} ms after the kill`);
    console.log(`  B took over ${Math.round(waited)} ms after A was killed`);
    assert.equal((await details(b, id)).instance, "inst-b");
    assert.equal(ok(await call(b, id, "x + '!'"), "next").result, "checkpointed!");
  },
});

/** An agent's tools and final answer, defined by source as smolagents sends them. */
const TOOLS = `
import json
class Tool:
    name = "tool"
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)
class WeatherTool(Tool):
    name = "weather"
    def forward(self, city):
        return {"Paris": 18, "Oslo": 4, "Lima": 22}[city]
class FinalAnswerException(BaseException):
    def __init__(self, value):
        self.value = value
class FinalAnswerTool(Tool):
    name = "final_answer"
    def forward(self, answer):
        raise FinalAnswerException(json.dumps(answer))
weather = WeatherTool()
final_answer = FinalAnswerTool()
`;

Deno.test({
  name: "three instances serve an agent's every call, whichever instance each one reaches",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startCluster(redis, ["inst-a", "inst-b", "inst-c"]);
    const seed = Date.now() % 100_000;
    const random = seeded(seed);
    const names = ["A", "B", "C"];

    /** One agent's run; each call goes to a random instance. */
    async function agent(n: number): Promise<void> {
      const route: string[] = [];
      const pick = () => {
        const i = Math.floor(random() * cluster.servers.length);
        route.push(names[i]);
        return cluster.servers[i];
      };
      const where = () => `agent ${n}, seed ${seed}, route ${route.join(" ")}`;
      const id = await pick().createSession();
      const step = async (code: string) => ok(await call(pick(), id, code), where());
      await step(TOOLS);
      const vars = JSON.stringify({ cities: ["Paris", "Oslo", "Lima"], unit: "C", agent: n });
      await step(`locals().update(json.loads(${JSON.stringify(vars)}))`);
      assert.deepEqual((await step("temps = {c: weather(c) for c in cities}\ntemps")).result, {
        Paris: 18,
        Oslo: 4,
        Lima: 22,
      }, where());
      const printed = await step(
        "warmest = max(temps, key=temps.get)\nspread = temps[warmest] - min(temps.values())\n" +
          "print('warmest:', warmest)\n[agent, spread, weather.name]",
      );
      assert.equal(printed.stdout, "warmest: Lima\n", where());
      assert.deepEqual(printed.result, [n, 18, "weather"], where());
      const final = await call(pick(), id, `final_answer({"spread": spread, "unit": unit})`);
      assert.equal(final.error?.pythonExceptionType, "FinalAnswerException", where());
      assert.deepEqual(JSON.parse(final.error!.pythonExceptionValue), { spread: 18, unit: "C" });
      // The answer did not end the session: it is still there, on any instance.
      assert.equal((await step("spread + len(cities)")).result, 21, where());
      console.log(`  ${where()}`);
    }
    await Promise.all([agent(1), agent(2)]);
  },
});

Deno.test({
  name:
    "Redis stopped mid-run leaves live sessions working, and checkpoints resume when it returns",
  ignore: skip !== undefined,
  async fn(t) {
    await using redis = await startRedis();
    if (!redis.owned) return console.warn("MOAT_TEST_REDIS_URL is set: cannot stop that Redis");
    const prefix = `moat-test-${crypto.randomUUID().slice(0, 8)}`;
    const env = instanceEnv(redis, prefix, "inst-a");
    let id: string;
    let latest: number;
    {
      await using server = await startServer({ env, policyText: POLICY });
      const statuses: number[] = [];
      const post = async (path: string, body: unknown) => {
        const answer = await server.post(path, body);
        statuses.push(answer.status);
        return answer;
      };
      id = await server.createSession();
      const first = await post(`/v1/sessions/${id}`, { code: "x = 1", checkpoint: "sync" });
      assert.equal(first.status, 200);
      assert.equal(first.body.checkpoint?.ok, true, JSON.stringify(first.body.checkpoint));
      await redis.stop();

      await t.step("a call on a live session answers 200 with its state", async () => {
        const { status, body } = await post(`/v1/sessions/${id}`, { code: "x += 1\nx" });
        assert.equal(status, 200, `${JSON.stringify(body)}\nserver stderr:\n${server.stderr}`);
        assert.equal(body.result, 2);
      });

      await t.step(
        "a sync call answers 200 and says its checkpoint failed, naming the store",
        async () => {
          const { status, body } = await post(`/v1/sessions/${id}`, {
            code: "x += 1\nx",
            checkpoint: "sync",
          });
          assert.equal(status, 200, `${JSON.stringify(body)}\nserver stderr:\n${server.stderr}`);
          assert.equal(body.result, 3);
          assert.equal(body.checkpoint?.ok, false, JSON.stringify(body));
          assert.match(body.checkpoint.reason, /redis|store/i);
        },
      );

      await t.step("nothing else answers 5xx either", async () => {
        const info = await server.request(`/v1/sessions/${id}`);
        statuses.push(info.status);
        await info.body?.cancel();
        const health = await server.request("/health", { auth: false });
        statuses.push(health.status);
        await health.body?.cancel();
        assert.equal(health.status, 200);
        assert.deepEqual(statuses.filter((s) => s >= 500), [], `statuses ${statuses}`);
      });

      await redis.start();
      await t.step("once Redis is back, a sync call's checkpoint is stored again", async () => {
        latest = (await untilStored(async () => {
          const { status, body } = await post(`/v1/sessions/${id}`, {
            code: "x += 1\nx",
            checkpoint: "sync",
          });
          assert.equal(status, 200, JSON.stringify(body));
          return body;
        })).result;
        assert.ok(latest >= 4);
        assert.deepEqual(statuses.filter((s) => s >= 500), [], `statuses ${statuses}`);
      });
      server.kill("SIGKILL");
      await server.exited();
    }
    await t.step("a restarted server restores that latest state", async () => {
      await using again = await startServer({ env, policyText: POLICY });
      const answer = ok(await call(again, id, "x", { timeoutMs: 30_000 }), "after restart");
      assert.equal(answer.result, latest);
      assert.equal(answer.restored, true);
    });
  },
});

Deno.test({
  name: "a store that hangs holds up no call: checkpoints wait for it, the session runs on",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    if (!redis.owned) return console.warn("MOAT_TEST_REDIS_URL is set: cannot freeze that Redis");
    const prefix = `moat-test-${crypto.randomUUID().slice(0, 8)}`;
    const env = instanceEnv(redis, prefix, "inst-a");
    let id: string;
    let latest: number;
    {
      await using server = await startServer({ env, policyText: POLICY });
      id = await server.createSession();
      ok(await call(server, id, "x = 1", { sync: true }), "before the freeze");
      redis.pause();
      const waits: number[] = [];
      try {
        // The first operation that meets the frozen Redis waits out the store's 2 s deadline;
        // after it, every operation fails at once until Redis answers a ping again. Each call
        // takes the session's lease and schedules a checkpoint, whose write fails. No call may
        // wait for any of it, as each would for 2 s.
        for (let i = 2; i <= 9; i++) {
          const started = performance.now();
          const answer = ok(await call(server, id, "x += 1\nx"), `call ${i} while frozen`);
          waits.push(Math.round(performance.now() - started));
          assert.equal(answer.result, i);
          await new Promise((r) => setTimeout(r, 400)); // past checkpointDelayMs: one starts
        }
      } finally {
        redis.resume();
      }
      assert.ok(waits.slice(1).every((ms) => ms < 1000), `calls while frozen took ${waits} ms`);
      // Once a ping is answered (within about a second) checkpoints are stored again: a sync
      // call says so by saying nothing of its checkpoint.
      latest = (await untilStored(async () =>
        ok(await call(server, id, "x += 1\nx", { sync: true }), "after the thaw")
      )).result;
      assert.ok(latest >= 10, `x is ${latest}`);
      server.kill("SIGKILL");
      await server.exited();
    }
    await using again = await startServer({ env, policyText: POLICY });
    const restored = ok(await call(again, id, "x", { timeoutMs: 30_000 }), "after restart");
    assert.equal(restored.result, latest);
    assert.equal(restored.restored, true);
  },
});
