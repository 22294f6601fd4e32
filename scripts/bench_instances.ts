/**
 * Calls per second and round-trip latency with 1, 2 and 3 Moat instances sharing one Redis, with
 * no session affinity: 8 client loops, each owning one session, send every trivial call to a
 * random instance for about 8 s. A redis-server is started here on a free loopback port (or the
 * one MOAT_TEST_REDIS_URL names).
 *
 *   deno run --no-prompt --allow-read --allow-write --allow-run --allow-net=127.0.0.1,localhost \
 *     --allow-env scripts/bench_instances.ts
 */
import { startRedis } from "../test/helpers/redis.ts";
import { type Cluster, startServers, type TestServer } from "../test/helpers/server.ts";

const INSTANCES = [1, 2, 3];
const SESSIONS = 8;
const WARMUP_MS = 1_000;
const DURATION_MS = 8_000;
const STORE_KEY = "bench-instances-store-key-0123456789";
const TOKEN = "bench-instances-token-0123456789";
const POLICY = "limits:\n  poolSize: 2\n";
const CALL = JSON.stringify({ code: "x = 1\nx", packages: [] });

interface Row {
  instances: number;
  calls: number;
  seconds: number;
  p50: number;
  p99: number;
  ok: number;
  restored: number;
  statuses: Map<number, number>;
  /** Load averages right after the measured window. */
  load: string;
}

async function startCluster(redisUrl: string, n: number): Promise<Cluster> {
  // A key prefix of its own per run, so no N sees the sessions of another.
  const prefix = `moat-bench-${n}-${crypto.randomUUID().slice(0, 8)}`;
  return await startServers(
    Array.from({ length: n }, (_, i) => ({
      policyText: POLICY,
      env: {
        MOAT_STORE: redisUrl,
        MOAT_STORE_KEY: STORE_KEY,
        MOAT_STORE_PREFIX: prefix,
        MOAT_INSTANCE_ID: `bench-${i + 1}`,
        MOAT_TOKEN: TOKEN,
      },
    })),
  );
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

/** One trivial call to `session` on `server`: status, whether it restored, round trip in ms. */
async function call(
  server: TestServer,
  session: string,
): Promise<{ status: number; restored: boolean; ms: number }> {
  const t = performance.now();
  try {
    const res = await server.request(`/v1/sessions/${session}`, {
      method: "POST",
      body: CALL,
      headers: { "content-type": "application/json" },
    });
    const text = await res.text();
    const ms = performance.now() - t;
    let restored = false;
    if (res.status === 200) restored = JSON.parse(text).restored === true;
    return { status: res.status, restored, ms };
  } catch {
    return { status: 0, restored: false, ms: performance.now() - t };
  }
}

async function measure(redisUrl: string, n: number): Promise<Row> {
  await using cluster = await startCluster(redisUrl, n);
  const { servers } = cluster;
  const pick = () => servers[Math.floor(Math.random() * servers.length)];
  const sessions: string[] = [];
  for (let i = 0; i < SESSIONS; i++) sessions.push(await servers[i % n].createSession());

  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let restored = 0;
  let recording = false;
  const loop = async (session: string, until: number) => {
    while (performance.now() < until) {
      const r = await call(pick(), session);
      if (!recording) continue;
      latencies.push(r.ms);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.restored) restored++;
    }
  };
  // Warm-up (not counted), then the measured run.
  await Promise.all(sessions.map((s) => loop(s, performance.now() + WARMUP_MS)));
  recording = true;
  const start = performance.now();
  await Promise.all(sessions.map((s) => loop(s, start + DURATION_MS)));
  const seconds = (performance.now() - start) / 1000;

  const sorted = [...latencies].sort((a, b) => a - b);
  const ok = statuses.get(200) ?? 0;
  if (ok !== latencies.length) {
    for (const s of servers) console.error(`--- ${s.url} stderr (tail)\n${s.stderr.slice(-2000)}`);
  }
  return {
    instances: n,
    calls: latencies.length,
    seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    ok,
    restored,
    statuses,
    load: await loadavg(),
  };
}

const loadBefore = await loadavg();
await using redis = await startRedis();
const rows: Row[] = [];
for (const n of INSTANCES) {
  const row = await measure(redis.url, n);
  rows.push(row);
  console.error(
    `${n} instance(s): ${row.calls} calls in ${row.seconds.toFixed(1)} s, statuses ` +
      JSON.stringify(Object.fromEntries(row.statuses)),
  );
}

/**
 * The 1, 5 and 15 minute load averages. Deno reads /proc files only with --allow-all, and
 * `Deno.loadavg()` needs --allow-sys, so ask `cat` (--allow-run is granted anyway).
 */
async function loadavg(): Promise<string> {
  try {
    const out = await new Deno.Command("cat", { args: ["/proc/loadavg"], stderr: "null" }).output();
    return new TextDecoder().decode(out.stdout).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

const pct = (x: number, of: number) => of ? `${(100 * x / of).toFixed(1)}%` : "n/a";
console.log(
  `\n${SESSIONS} sessions, ${SESSIONS} client loops, random instance per call, ` +
    `${DURATION_MS / 1000} s each, load average before ${loadBefore}\n`,
);
console.log("| instances | calls/s | p50 | p99 | 200 | restored | load after |");
console.log("| --------- | ------- | --- | --- | --- | -------- | ---------- |");
for (const r of rows) {
  console.log(
    `| ${r.instances} | ${(r.calls / r.seconds).toFixed(0)}/s | ${r.p50.toFixed(2)} ms | ` +
      `${r.p99.toFixed(2)} ms | ${pct(r.ok, r.calls)} | ${pct(r.restored, r.calls)} | ${r.load} |`,
  );
}
