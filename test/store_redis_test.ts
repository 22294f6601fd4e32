/**
 * The session store on a real Redis (started here on a loopback port, or MOAT_TEST_REDIS_URL):
 * the shared contract, and what happens when Redis stops, freezes and comes back.
 */
import assert from "node:assert/strict";
import { openStore } from "../src/store/open.ts";
import { RedisBackend } from "../src/store/redis.ts";
import { StoreUnavailable } from "../src/store/store.ts";
import { redisUnavailable, startRedis } from "./helpers/redis.ts";
import { meta, storeContract, TEST_SECRET } from "./helpers/store_contract.ts";

const skip = await redisUnavailable();
if (skip) console.warn(`skipping the Redis store tests: ${skip}`);
const run = `moat-test-${crypto.randomUUID().slice(0, 8)}`;

/** Fails the test instead of hanging it when a store operation never settles. */
function settles<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} hung`)), 15_000);
  });
  return Promise.race([promise, hang]).finally(() => clearTimeout(timer));
}

async function untilUp(ping: () => Promise<void>): Promise<void> {
  for (let i = 0;; i++) {
    try {
      return await ping();
    } catch (err) {
      if (i > 200) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

Deno.test({
  name: "the Redis store keeps the store contract",
  ignore: skip !== undefined,
  async fn(t) {
    await using redis = await startRedis();
    await storeContract(t, {
      open: (prefix = run) => RedisBackend.open({ url: redis.url, prefix }),
      prefixes: true,
    });
  },
});

Deno.test({
  name: "a Redis store refuses to open without MOAT_STORE_KEY",
  ignore: skip !== undefined,
  async fn() {
    await assert.rejects(
      openStore({
        setting: { kind: "redis", url: "redis://127.0.0.1:1/0", host: "127.0.0.1:1", db: 0 },
        cacheDir: "/nonexistent/",
      }),
      /MOAT_STORE_KEY must be set/,
    );
  },
});

Deno.test({
  name: "Redis stopped mid-run fails operations fast, and the store works again when it returns",
  ignore: skip !== undefined,
  async fn(t) {
    await using redis = await startRedis();
    if (!redis.owned) return console.warn("MOAT_TEST_REDIS_URL is set: cannot stop that Redis");
    const url = new URL(redis.url);
    const store = await openStore({
      setting: { kind: "redis", url: redis.url, host: url.host, db: 0 },
      key: TEST_SECRET,
      prefix: run,
      cacheDir: "/nonexistent/",
      opTimeoutMs: 500,
    });
    const checkpoint = { meta: meta(1), delta: new Uint8Array([1, 2, 3]) };
    try {
      await store.putCheckpoint("s", checkpoint);

      await t.step("stopped: every operation rejects with StoreUnavailable", async () => {
        await redis.stop();
        for (
          const op of <(() => Promise<unknown>)[]> [
            () => store.getCheckpoint("s"),
            () => store.putCheckpoint("s", checkpoint),
            () => store.acquireLease("s", "A", 1000),
            () => store.listSessions(),
            () => store.ping(),
          ]
        ) {
          await assert.rejects(settles(op(), "an operation on a stopped Redis"), StoreUnavailable);
        }
      });

      await t.step("restarted: the same client reconnects by itself", async () => {
        await redis.start();
        await settles(untilUp(() => store.ping()), "reconnecting");
        await store.putCheckpoint("s", checkpoint);
        assert.deepEqual(await store.getCheckpoint("s"), checkpoint);
      });

      await t.step("frozen (SIGSTOP): operations reject at their deadline", async () => {
        redis.pause();
        try {
          await assert.rejects(
            settles(store.getCheckpoint("s"), "a frozen Redis"),
            StoreUnavailable,
          );
        } finally {
          redis.resume();
        }
        await settles(untilUp(() => store.ping()), "recovering from a freeze");
        assert.deepEqual(await store.getCheckpoint("s"), checkpoint);
      });
    } finally {
      await store.deleteSession("s").catch(() => {});
      await store.close();
    }
  },
});

Deno.test({
  name: "a Redis store opened while Redis is down starts, and connects when Redis comes",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    if (!redis.owned) return;
    await redis.stop();
    const url = new URL(redis.url);
    const store = await settles(
      openStore({
        setting: { kind: "redis", url: redis.url, host: url.host, db: 0 },
        key: TEST_SECRET,
        prefix: run,
        cacheDir: "/nonexistent/",
      }),
      "opening a store on a stopped Redis",
    );
    try {
      await assert.rejects(store.ping(), StoreUnavailable);
      await redis.start();
      await settles(untilUp(() => store.ping()), "connecting");
      assert.equal(await store.countSessions(), 0);
    } finally {
      await store.close();
    }
  },
});
