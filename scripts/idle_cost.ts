import { cpuSeconds } from "../test/helpers/proc.ts";
import { freePort, startRedis } from "../test/helpers/redis.ts";
import { startServers } from "../test/helpers/server.ts";
await using redis = await startRedis();
const prefix = `p-${crypto.randomUUID().slice(0, 8)}`;
await using cluster = await startServers(["A", "B", "C"].map((id) => {
  const port = freePort();
  return { policyText: "limits:\n  poolSize: 2\n", env: { MOAT_STORE: redis.url, MOAT_STORE_KEY: "bench-instances-store-key-0123456789", MOAT_STORE_PREFIX: prefix, MOAT_INSTANCE_ID: id, MOAT_TOKEN: "bench-instances-token-0123456789", MOAT_PORT: String(port), MOAT_ADVERTISE_URL: `http://127.0.0.1:${port}` } };
}));
for (const s of cluster.servers) for (let i = 0; i < 3; i++) { const id = await s.createSession(); await s.exec("n = 1", { session: id }); }
await new Promise((r) => setTimeout(r, 3000));
for (let k = 0; k < 3; k++) {
  const before = await Promise.all(cluster.servers.map((s) => cpuSeconds(s.pid!)));
  await new Promise((r) => setTimeout(r, 5000));
  const after = await Promise.all(cluster.servers.map((s) => cpuSeconds(s.pid!)));
  console.log("idle CPU per instance (cores):", after.map((a, i) => ((a - before[i]) / 5).toFixed(3)).join(" "));
}
