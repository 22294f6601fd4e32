/**
 * The session store's settings reach the permission flags and start-up: the flags grant exactly
 * the store's file or Redis host, and the server starts (its self-check passes) with each store.
 */
import assert from "node:assert/strict";
import { flagsForSettings } from "../scripts/flags.ts";
import { ROOT } from "../src/paths.ts";
import { redisUnavailable, startRedis } from "./helpers/redis.ts";
import { startServer } from "./helpers/server.ts";

const KEY = "flags-test-secret-0123456789";

function flag(flags: string[], name: string): string[] {
  return (flags.find((f) => f.startsWith(`--allow-${name}=`)) ?? "").split("=")[1].split(",");
}

Deno.test("the flags grant exactly the store's file or Redis host, nothing wider", async () => {
  const plain = await flagsForSettings(() => undefined, () => {});
  assert.deepEqual(flag(plain, "write"), [`${ROOT}.moat-cache`], "kv defaults into the cache");
  const kv = await flagsForSettings((n) => n === "MOAT_STORE" ? "kv:/srv/moat/s.kv" : undefined);
  assert.deepEqual(flag(kv, "write"), [`${ROOT}.moat-cache`, "/srv/moat/s.kv"]);
  assert.ok(flag(kv, "read").includes("/srv/moat/s.kv"));
  assert.ok(!flag(kv, "read").includes("/srv/moat"));
  const env: Record<string, string> = {
    MOAT_STORE: "redis://10.1.2.3:6380/1",
    MOAT_STORE_KEY: KEY,
  };
  const redis = await flagsForSettings((n) => env[n]);
  assert.deepEqual(flag(redis, "net"), [...flag(plain, "net"), "10.1.2.3:6380"]);
  assert.deepEqual(flag(redis, "write"), flag(plain, "write"));
});

Deno.test("the server starts with a KV file of its own and prints which store it uses", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using server = await startServer({ env: { MOAT_STORE: `kv:${dir}/sessions.kv` } });
    assert.match(server.stderr, new RegExp(`session store: Deno KV at ${dir}/sessions.kv`));
    assert.equal((await server.exec("1 + 1")).result, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the server with the memory store says that nothing survives a restart", async () => {
  await using server = await startServer({ env: { MOAT_STORE: "memory" } });
  assert.match(server.stderr, /session store: memory \(nothing survives a restart\)/);
});

const noRedis = await redisUnavailable();
Deno.test({
  name: "the server starts with a Redis store, and refuses one without MOAT_STORE_KEY",
  ignore: noRedis !== undefined,
  async fn() {
    await using redis = await startRedis();
    {
      await using server = await startServer({
        env: { MOAT_STORE: redis.url, MOAT_STORE_KEY: KEY, MOAT_STORE_PREFIX: "moat-flags" },
      });
      assert.match(
        server.stderr,
        /session store: Redis at 127\.0\.0\.1:\d+ db 0 \(prefix 'moat-flags'\), snapshot/,
      );
      assert.equal((await server.exec("1 + 1")).result, 2);
    }
    await assert.rejects(
      startServer({ env: { MOAT_STORE: redis.url } }),
      /MOAT_STORE_KEY: must be set when MOAT_STORE is a shared Redis/,
    );
  },
});
