import { cpuSeconds } from "../test/helpers/proc.ts";
import { freePort, startRedis } from "../test/helpers/redis.ts";
import { startServers } from "../test/helpers/server.ts";
import { startNginx } from "../test/helpers/nginx.ts";
const TOKEN = "bench-instances-token-0123456789";
await using redis = await startRedis();
const prefix = `p-${crypto.randomUUID().slice(0, 8)}`;
const n = Number(Deno.env.get("N") ?? 3);
await using cluster = await startServers(["A", "B", "C"].slice(0, n).map((id) => {
  const port = freePort();
  return { policyText: "limits:\n  poolSize: 2\n", env: { MOAT_STORE: redis.url, MOAT_STORE_KEY: "bench-instances-store-key-0123456789", MOAT_STORE_PREFIX: prefix, MOAT_INSTANCE_ID: id, MOAT_TOKEN: TOKEN, MOAT_PORT: String(port), ...(Deno.env.get("NOADV") ? {} : { MOAT_ADVERTISE_URL: `http://127.0.0.1:${port}` }) } };
}));
const s = cluster.servers;
await using lb = await startNginx(s.map((x) => x.url.replace("http://", "")));
const spread = Deno.env.get("SPREAD");
const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => (spread ? s[i % n] : s[0]).createSession()));
const home = new Map(ids.map((id, i) => [id, spread ? s[i % n] : s[0]]));
const body = JSON.stringify({ code: "n = globals().get('n', 0) + 1", packages: [] });
const via = Deno.env.get("VIA") ?? "lb";
async function run(k: number) {
  const before = await Promise.all(s.map((x) => cpuSeconds(x.pid!)));
  const t = performance.now();
  await Promise.all(ids.map(async (id) => {
    for (let i = 0; i < k; i++) {
      const r = await fetch(`${via === "lb" ? lb.url : via === "owner" ? home.get(id)!.url : s[0].url}/v1/sessions/${id}`, { method: "POST", body, headers: { authorization: `Bearer ${TOKEN}` } });
      await r.text();
    }
  }));
  const sec = (performance.now() - t) / 1000;
  const after = await Promise.all(s.map((x) => cpuSeconds(x.pid!)));
  const calls = k * ids.length;
  return `${(calls / sec).toFixed(0)}/s, CPU ms/call per instance: ${after.map((a, i) => ((a - before[i]) * 1000 / calls).toFixed(2)).join(" ")}`;
}
await run(30);
for (let i = 0; i < 3; i++) console.log(await run(200));
