/**
 * `deno task bench`: measures Moat end to end and prints one table. Interpreter boots are
 * measured in this process; everything else against the real server, started the way
 * `deno task start` starts it, over HTTP on loopback.
 *
 *   deno task bench            # the full run (about two minutes)
 *   deno task bench --quick    # fewer repetitions
 *   deno task bench --mcp      # only MCP's run_python_code against the HTTP API
 */
import { LimitsSchema } from "../src/policy/schema.ts";
import { Interpreter } from "../src/sandbox/interpreter.ts";
import { loadSnapshot } from "../src/sandbox/snapshot.ts";
import { httpClient } from "../test/helpers/mcp.ts";
import { startServer, type TestServer } from "../test/helpers/server.ts";

const quick = Deno.args.includes("--quick");
const N = (full: number) => quick ? Math.max(3, Math.round(full / 5)) : full;

const POLICY = `
limits:
  sessions: 40
  poolSize: 2
packages:
  preload: []
`;

interface Row {
  what: string;
  value: string;
  target?: string;
  met?: boolean;
}
const rows: Row[] = [];
const say = (line: string) => console.error(`bench: ${line}`);
const record = (row: Row) => {
  rows.push(row);
  say(`  ${row.what}: ${row.value}`);
};

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

const ms = (n: number) => n < 10 ? `${n.toFixed(2)} ms` : `${Math.round(n)} ms`;
const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

async function call(server: TestServer, code: string, session?: string) {
  const path = session ? `/v1/sessions/${session}` : "/";
  const res = await server.request(path, {
    method: "POST",
    body: JSON.stringify({ code, packages: [] }),
  });
  const body = await res.json();
  if (res.status !== 200 || body.error) throw new Error(`${code}: ${JSON.stringify(body)}`);
  return body;
}

/** CPU seconds (user + system, all threads) another process has used so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`] }).output();
  const fields = new TextDecoder().decode(out.stdout).split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}

/** Resident memory of another process (Deno reads /proc only with --allow-all). */
async function rssBytes(pid: number): Promise<number> {
  const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim()) * 1024;
}

async function poolFull(server: TestServer, size: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const health = await (await server.request("/health", { auth: false })).json();
    if (health.poolReady >= size) return;
    await sleep(50);
  }
  throw new Error("the pool did not refill");
}

async function boots(): Promise<void> {
  say("booting interpreters in this process (snapshot, then cold)…");
  const limits = LimitsSchema.parse({});
  const snapshot = await loadSnapshot(say);
  const measure = async (times: number, withSnapshot: boolean) => {
    const walls: number[] = [];
    for (let i = 0; i < times; i++) {
      const started = performance.now();
      const interpreter = await Interpreter.start({
        limits,
        snapshot: withSnapshot ? snapshot.bytes : undefined,
      });
      walls.push(performance.now() - started);
      interpreter.terminate();
      await sleep(100);
    }
    return percentile(walls, 0.5);
  };
  await measure(1, true); // the first boot also compiles the worker's TypeScript
  const warm = await measure(N(10), true);
  const cold = await measure(N(3), false);
  record({
    what: "worker boot from the snapshot (p50)",
    value: ms(warm),
    target: "≤ 400 ms",
    met: warm <= 400,
  });
  record({ what: "worker boot, cold loadPyodide(), no snapshot (p50)", value: ms(cold) });
}

/**
 * A trivial `run_python_code` over MCP Streamable HTTP (the TypeScript SDK's client, its own
 * session) against a trivial call on the HTTP API, alternated so both see the same load.
 */
async function mcpTrips(server: TestServer): Promise<void> {
  say("run_python_code over MCP Streamable HTTP against the HTTP API…");
  await using mcp = await httpClient(server);
  const tool = { name: "run_python_code", arguments: { python_code: "1" } };
  for (let i = 0; i < 50; i++) await mcp.client.callTool(tool);
  const overMcp: number[] = [];
  const overHttp: number[] = [];
  for (let i = 0; i < N(500); i++) {
    let t = performance.now();
    await mcp.client.callTool(tool);
    overMcp.push(performance.now() - t);
    t = performance.now();
    await call(server, "1");
    overHttp.push(performance.now() - t);
  }
  const p = (v: number[]) => `${ms(percentile(v, 0.5))} / ${ms(percentile(v, 0.99))}`;
  record({
    what: "trivial run_python_code over MCP Streamable HTTP (p50 / p99)",
    value: `${p(overMcp)} (HTTP API alternated with it: ${p(overHttp)})`,
  });
}

async function serverPhases(): Promise<void> {
  say("starting the server…");
  const started = performance.now();
  await using server = await startServer({ policyText: POLICY });
  await call(server, "1 + 1");
  const firstResult = performance.now() - started;
  const own = server.stderr.match(/ready at \S+ in (\d+) ms/)?.[1];
  record({
    what: "start-up to first result (process spawn → answer)",
    value: `${ms(firstResult)} (server says ready in ${own} ms)`,
  });

  say("round trips on a warm session…");
  for (let i = 0; i < 200; i++) await call(server, "1");
  const trips: number[] = [];
  const inWorker: number[] = [];
  for (let i = 0; i < N(3000); i++) {
    const t = performance.now();
    const body = await call(server, "1");
    trips.push(performance.now() - t);
    inWorker.push(body.durationMs);
  }
  const p50 = percentile(trips, 0.5);
  record({
    what: "trivial call round trip, warm session (p50 / p99)",
    value: `${ms(p50)} / ${ms(percentile(trips, 0.99))} (call itself p50 ${
      ms(percentile(inWorker, 0.5))
    })`,
    target: "p50 ≤ 1 ms",
    met: p50 <= 1,
  });

  await mcpTrips(server);

  say("new sessions to first result…");
  const fresh: number[] = [];
  for (let i = 0; i < N(20); i++) {
    await poolFull(server, 2);
    const t = performance.now();
    const created = await server.post("/v1/sessions", {});
    await call(server, "1", created.body.id);
    fresh.push(performance.now() - t);
    const res = await server.request(`/v1/sessions/${created.body.id}`, { method: "DELETE" });
    await res.body?.cancel();
  }
  const freshP50 = percentile(fresh, 0.5);
  record({
    what: "new session to first result (p50, pool refilled)",
    value: ms(freshP50),
    target: "≤ 30 ms",
    met: freshP50 <= 30,
  });

  say("resident memory of 20 idle sessions…");
  const pid = server.pid!;
  await poolFull(server, 2);
  await sleep(2000);
  const before = await rssBytes(pid);
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const created = await server.post("/v1/sessions", {});
    ids.push(created.body.id);
    await call(server, "x = 1", created.body.id);
  }
  await poolFull(server, 2);
  await sleep(3000);
  const perSession = (await rssBytes(pid) - before) / 20 / (1024 * 1024);
  record({
    what: "resident memory per idle session (20 sessions)",
    value: `${perSession.toFixed(1)} MB`,
    target: "≤ 60 MB",
    met: perSession <= 60,
  });
  for (const id of ids) {
    const res = await server.request(`/v1/sessions/${id}`, { method: "DELETE" });
    await res.body?.cancel();
  }

  say("calls per second with 8 sessions in parallel…");
  const eight: string[] = [];
  for (let i = 0; i < 8; i++) eight.push((await server.post("/v1/sessions", {})).body.id);
  await Promise.all(eight.map(async (id) => {
    for (let i = 0; i < 100; i++) await call(server, "1", id);
  }));
  const seconds = quick ? 2 : 5;
  const until = performance.now() + seconds * 1000;
  let calls = 0;
  const cpu0 = await cpuSeconds(pid);
  const t0 = performance.now();
  await Promise.all(eight.map(async (id) => {
    while (performance.now() < until) {
      await call(server, "1", id);
      calls++;
    }
  }));
  const rate = calls / ((performance.now() - t0) / 1000);
  const cpuPerCall = (await cpuSeconds(pid) - cpu0) / calls * 1e6;
  record({
    what: "calls per second, 8 sessions in parallel",
    value:
      `${Math.round(rate)} /s (server CPU ${Math.round(cpuPerCall)} µs per call, all threads: ` +
      `${Math.round(2e6 / cpuPerCall)} calls/s if it had both cores to itself)`,
    target: "≥ 2000 /s",
    met: rate >= 2000,
  });

  say("a CPU-bound loop in the sandbox and in native python3…");
  const loop =
    "def f():\n    s = 0\n    for i in range(3_000_000):\n        s += i * i\n    return s\n";
  const sandboxed: number[] = [];
  await call(server, loop);
  for (let i = 0; i < 3; i++) sandboxed.push((await call(server, "f()")).durationMs);
  const native = await nativePython(loop);
  const inSandbox = percentile(sandboxed, 0.5);
  record({
    what: "CPU-bound loop (3M iterations): sandbox vs native python3",
    value: native === undefined
      ? `${ms(inSandbox)} (python3 not found)`
      : `${ms(inSandbox)} vs ${ms(native.ms)} (${native.version}): ${
        (inSandbox / native.ms).toFixed(1)
      }×`,
  });
}

async function nativePython(loop: string): Promise<{ ms: number; version: string } | undefined> {
  const script = `${loop}
import sys, time
f()
runs = []
for _ in range(3):
    t = time.perf_counter(); f(); runs.append((time.perf_counter() - t) * 1000)
print(sorted(runs)[1], sys.version.split()[0])`;
  try {
    const out = await new Deno.Command("python3", { args: ["-c", script], stdout: "piped" })
      .output();
    const [value, version] = new TextDecoder().decode(out.stdout).trim().split(" ");
    return { ms: Number(value), version: `Python ${version}` };
  } catch {
    return undefined;
  }
}

/** The machine's load average, from `uptime` (other work on the machine skews every number). */
async function load(): Promise<string> {
  try {
    const out = await new Deno.Command("uptime", { stdout: "piped" }).output();
    return new TextDecoder().decode(out.stdout).match(/load average: (.*)$/m)?.[1] ?? "?";
  } catch {
    return "?";
  }
}

const loadBefore = await load();
if (Deno.args.includes("--mcp")) {
  await using server = await startServer({ policyText: POLICY });
  await mcpTrips(server);
} else {
  await boots();
  await serverPhases();
}

const width = Math.max(...rows.map((r) => r.what.length));
console.log(
  `\nMoat benchmark (${Deno.build.os}, ${navigator.hardwareConcurrency} cores; ` +
    `load average ${loadBefore} before, ${await load()} after)\n`,
);
for (const row of rows) {
  const verdict = row.target ? `  target ${row.target}: ${row.met ? "met" : "NOT met"}` : "";
  console.log(`${row.what.padEnd(width)}  ${row.value}${verdict}`);
}
