/**
 * Session-store speed: put and get of a 1 MB and a 10 MB checkpoint on memory (sealing alone),
 * Deno KV (a temporary file) and Redis (MOAT_TEST_REDIS_URL, or a redis-server started here).
 * Deltas are half random, half zeros: Pyodide memory is neither all noise nor all empty.
 *
 *   deno run --no-prompt --allow-read --allow-write --allow-run --allow-net=127.0.0.1,localhost \
 *     --allow-env scripts/bench_store.ts
 */
import { openStore } from "../src/store/open.ts";
import type { Store } from "../src/store/store.ts";
import { startRedis } from "../test/helpers/redis.ts";
import { meta, randomBytes } from "../test/helpers/store_contract.ts";

const ROUNDS = 5;
const KEY = "bench-secret-0123456789abcdef";

function delta(size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(randomBytes(size / 2));
  return out;
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

async function measure(name: string, store: Store): Promise<void> {
  for (const mb of [1, 10]) {
    const checkpoint = { meta: meta(1), delta: delta(mb << 20) };
    const puts: number[] = [];
    const gets: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      let t = performance.now();
      await store.putCheckpoint("bench", checkpoint);
      puts.push(performance.now() - t);
      t = performance.now();
      await store.getCheckpoint("bench");
      gets.push(performance.now() - t);
    }
    console.log(
      `${name.padEnd(7)} ${String(mb).padStart(2)} MB  put p50 ${median(puts).toFixed(1)} ms` +
        `  get p50 ${median(gets).toFixed(1)} ms`,
    );
  }
  await store.deleteSession("bench");
  await store.close();
}

const dir = await Deno.makeTempDir();
try {
  await measure("memory", await openStore({ setting: { kind: "memory" }, cacheDir: `${dir}/` }));
  await measure(
    "kv",
    await openStore({ setting: { kind: "kv" }, cacheDir: `${dir}/`, key: KEY }),
  );
  await using redis = await startRedis();
  const url = new URL(redis.url);
  await measure(
    "redis",
    await openStore({
      setting: { kind: "redis", url: redis.url, host: url.host, db: 0 },
      key: KEY,
      prefix: "moat-bench",
      cacheDir: `${dir}/`,
      opTimeoutMs: 10_000,
    }),
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
