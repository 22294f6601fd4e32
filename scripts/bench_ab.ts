/**
 * Two checkouts side by side in one run, on a shared and noisy machine: starts the server of each
 * (the start task's flags, with the paths of that checkout) and alternates rounds of trivial calls
 * between them (4 sessions each, 300 calls per session a round, 7 measured rounds after a warm-up),
 * then prints each one's median calls/s, server CPU per call and round-trip p50 and p99. Run it twice with
 * the order swapped: the one measured first in each round has an edge.
 *
 *   git worktree add /tmp/base <commit> && ln -s "$PWD/node_modules" /tmp/base/node_modules
 *   deno run -A scripts/bench_ab.ts /tmp/base/ "$PWD/"
 *   deno run -A scripts/bench_ab.ts --policy=net.yaml /tmp/base/ "$PWD/"   # another policy
 *   deno run -A scripts/bench_ab.ts --tenant "$PWD/" "$PWD/"   # the last one as a tenant
 *   deno run -A scripts/bench_ab.ts --tenant --tenant-policy "$PWD/" "$PWD/"   # its own policy
 *
 * `--tenant`: the last checkout runs with `MOAT_TENANTS` (one tenant with quotas it never
 * reaches), and its sessions are created and called with that tenant's token: the cost of the
 * tenant checks, against the same checkout called by the operator. `--tenant-policy`: that tenant
 * runs under a policy of its own (the same limits, another file), so its sessions go through a
 * tenant scope.
 */
import { cpuSeconds } from "../test/helpers/proc.ts";
import { startServer, type TestServer } from "../test/helpers/server.ts";

const ROOT = new URL("../", import.meta.url).pathname;
// `--policy=FILE`: both servers run that policy instead of the default with a pool of 2.
const policyArg = Deno.args.find((a) => a.startsWith("--policy="));
const policyText = policyArg
  ? Deno.readTextFileSync(policyArg.slice("--policy=".length))
  : "limits:\n  poolSize: 2\n";
const roots = Deno.args.filter((a) => !a.startsWith("--")).map((r) =>
  r.endsWith("/") ? r : `${r}/`
);
if (roots.length < 2) throw new Error("usage: bench_ab.ts CHECKOUT_A/ CHECKOUT_B/");
const CALLS = 300;
const SESSIONS = 4;
const body = JSON.stringify({ code: "1 + 1", packages: [] });

const TENANT_TOKEN = "bench-tenant-token-0123456789";
const asTenant = Deno.args.includes("--tenant");
const tenantsFile = await Deno.makeTempFile({ suffix: ".yaml" });
const ownPolicy = await Deno.makeTempFile({ suffix: ".yaml" });
await Deno.writeTextFile(ownPolicy, policyText);
await Deno.writeTextFile(
  tenantsFile,
  'tenants:\n  - name: bench\n    token: "${MOAT_BENCH_TENANT_TOKEN}"\n' +
    "    limits: { sessions: 64, callsPerMinute: 10000000 }\n" +
    (Deno.args.includes("--tenant-policy") ? `    policy: ${ownPolicy}\n` : ""),
);
const servers: TestServer[] = [];
for (const [k, root] of roots.entries()) {
  const tenant = asTenant && k === roots.length - 1;
  servers.push(
    await startServer({
      root,
      // The flags name this checkout's paths (the helper derives them for its own).
      mapFlags: (flags) => flags.map((f) => f.replaceAll(ROOT, root)),
      policyText,
      env: tenant
        ? { MOAT_TENANTS: tenantsFile, MOAT_BENCH_TENANT_TOKEN: TENANT_TOKEN }
        : undefined,
    }),
  );
}
/** The Authorization of server `k`'s calls: the operator's token, or the tenant's. */
const auth = (k: number) =>
  asTenant && k === roots.length - 1
    ? { auth: false, headers: { Authorization: `Bearer ${TENANT_TOKEN}` } }
    : {};
try {
  const ids = await Promise.all(
    servers.map((s, k) =>
      Promise.all(Array.from({ length: SESSIONS }, async () => {
        const res = await s.request("/v1/sessions", { method: "POST", ...auth(k) });
        return (await res.json()).id as string;
      }))
    ),
  );
  const stats = servers.map(() => ({
    rate: [] as number[],
    cpu: [] as number[],
    p50: [] as number[],
    p99: [] as number[],
  }));
  for (let round = 0; round < 8; round++) {
    for (const [k, server] of servers.entries()) {
      const cpuBefore = await cpuSeconds(server.pid!);
      const latencies: number[] = [];
      const t = performance.now();
      await Promise.all(ids[k].map(async (id) => {
        for (let i = 0; i < CALLS; i++) {
          const t1 = performance.now();
          const init = { method: "POST", body, ...auth(k) };
          await (await server.request(`/v1/sessions/${id}`, init)).text();
          latencies.push(performance.now() - t1);
        }
      }));
      const seconds = (performance.now() - t) / 1000;
      if (round === 0) continue; // warm-up
      const calls = CALLS * SESSIONS;
      stats[k].rate.push(calls / seconds);
      stats[k].cpu.push((await cpuSeconds(server.pid!) - cpuBefore) * 1000 / calls);
      latencies.sort((a, b) => a - b);
      stats[k].p50.push(latencies[Math.floor(calls / 2)]);
      stats[k].p99.push(latencies[Math.floor(calls * 0.99)]);
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  for (const [k, root] of roots.entries()) {
    console.log(
      `${root}${auth(k).headers ? " (as a tenant)" : ""}: ` +
        `${median(stats[k].rate).toFixed(0)} calls/s, server CPU ` +
        `${median(stats[k].cpu).toFixed(3)} ms per call, round trip p50 ` +
        `${median(stats[k].p50).toFixed(2)} ms, p99 ${median(stats[k].p99).toFixed(2)} ms ` +
        "(medians of 7 rounds)",
    );
  }
} finally {
  for (const s of servers) await s[Symbol.asyncDispose]();
}
