import { cpuSeconds } from "../test/helpers/proc.ts";
import { freePort, startRedis } from "../test/helpers/redis.ts";
import { startServers } from "../test/helpers/server.ts";
const TOKEN = "bench-instances-token-0123456789";
await using redis = await startRedis();
const prefix = `p-${crypto.randomUUID().slice(0, 8)}`;
await using cluster = await startServers(["A", "B"].map((id) => {
  const port = freePort();
  return { ...(id === "B" && Deno.env.get("PROF") ? { mapFlags: (f: string[]) => f.map((x) => x.startsWith("--v8-flags=") ? `${x},--prof,--logfile=/tmp/v8prof/b-%p.log` : x), env2: {} } : {}), policyText: "limits:\n  poolSize: 1\n", env: { MOAT_STORE: redis.url, MOAT_STORE_KEY: "bench-instances-store-key-0123456789", MOAT_STORE_PREFIX: prefix, MOAT_INSTANCE_ID: id, MOAT_TOKEN: TOKEN, MOAT_PORT: String(port), MOAT_ADVERTISE_URL: `http://127.0.0.1:${port}` } };
}));
const [a, b] = cluster.servers;
const ids = await Promise.all(Array.from({ length: 4 }, () => a.createSession()));
const body = JSON.stringify({ code: Deno.env.get("CODE") ?? "1", packages: [] });
async function run(target: typeof a, n: number) {
  const ca = await cpuSeconds(a.pid!), cb = await cpuSeconds(b.pid!);
  const t = performance.now();
  await Promise.all(ids.map(async (id) => {
    for (let i = 0; i < n; i++) {
      const r = await target.request(`/v1/sessions/${id}`, { method: "POST", body });
      await r.text();
    }
  }));
  const s = (performance.now() - t) / 1000;
  const calls = n * ids.length;
  return `${target === a ? "direct to A " : "through B->A"}: ${(calls / s).toFixed(0)}/s, CPU A ${((await cpuSeconds(a.pid!) - ca) * 1000 / calls).toFixed(2)} ms/call, B ${((await cpuSeconds(b.pid!) - cb) * 1000 / calls).toFixed(2)} ms/call`;
}
await run(a, 50); await run(b, 50);
if (Deno.env.get("PROF")) { console.log(await run(b, 1500)); b.kill("SIGTERM"); await b.exited(); } else for (let i = 0; i < 3; i++) { console.log(await run(a, 300)); console.log(await run(b, 300)); }
