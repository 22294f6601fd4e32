/**
 * A soak: the real server under normal agents beside hostile sessions, for `--minutes N`
 * (default 10). Normal agents change and read back their state every 200 ms; hostile sessions
 * loop forever, leave asyncio tasks spinning, fill memory and files, ask for big outputs they
 * never read, and flood `/mcp` with sessions. It prints what a user would check: calls lost,
 * wrong answers, 5xx, `/health` p99, and peak resident memory against the policy's budget.
 *
 *   deno task soak --minutes 10
 *   deno task soak --minutes 2 --why   # and what the server logged around the slowest probes
 */
import { INITIALIZE } from "../test/helpers/mcp.ts";
import { rssBytes } from "../test/helpers/proc.ts";
import { startServer, type TestServer } from "../test/helpers/server.ts";

const minutes = Number(Deno.args[Deno.args.indexOf("--minutes") + 1] || 10) || 10;
const BUDGET_MB = 3072;
const POLICY = `
limits:
  timeoutMs: 3000
  graceMs: 500
  memoryMb: 512
  serverMemoryMb: ${BUDGET_MB}
  sessions: 40
  queuedCalls: 8
  mcpSessions: 64
  fileBytes: 16777216
  filesBytes: 67108864
packages:
  preload: []
`;

const counts = { calls: 0, lost: 0, wrong: 0, status5xx: 0, hostile: 0, refused: 0 };
/** `/health` times measured in the soak's own (busy) event loop, and by a worker of its own. */
const health: number[] = [];
/** `/health` probes slower than this are kept with their start, for `--why`. */
const SLOW_MS = 50;
const slow: { ms: number; at: number }[] = [];
const isolated: number[] = [];
let peakRss = 0;
/** RSS samples taken, those over the budget, and the longest run of samples over it. */
const rssSamples = { all: 0, over: 0, run: 0, longest: 0 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One execute request; counts 5xx; returns the body or undefined when it failed at HTTP level. */
async function exec(server: TestServer, id: string, code: string, extra: object = {}) {
  const res = await fetch(`${server.url}/v1/sessions/${id}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${server.token}` },
    body: JSON.stringify({ code, ...extra }),
    signal: AbortSignal.timeout(60_000),
  });
  if (res.status >= 500) counts.status5xx++;
  const body = await res.json().catch(() => undefined);
  return res.status === 200 ? body : undefined;
}

async function session(server: TestServer): Promise<string> {
  for (;;) {
    const res = await server.post("/v1/sessions", {});
    if (res.status >= 500) counts.status5xx++;
    if (res.status === 201) return res.body.id;
    await sleep(500); // 429: every live session busy; try again
  }
}

/** A well-behaved agent: sets a value, reads it back, checks it. */
async function agent(server: TestServer, until: number): Promise<void> {
  const id = await session(server);
  for (let k = 0; performance.now() < until; k++) {
    counts.calls += 2;
    try {
      const set = await exec(server, id, `x = ${k}\nprint("step", x)`);
      const got = await exec(server, id, "x");
      if (!set || !got) counts.lost++;
      else if (got.result !== k) {
        // A state lost to a limit is said (restored / lost / error); anything else is wrong.
        if (!got.error && !got.restored && !set.error) counts.wrong++;
      }
    } catch {
      counts.lost++;
    }
    await sleep(200);
  }
}

const HOSTILE = [
  "while True:\n    pass",
  "import asyncio\nasync def spin():\n    while True:\n        pass\nt = asyncio.ensure_future(spin())\n1",
  "import asyncio\nasyncio.get_event_loop().call_later(0.1, lambda: [0 for _ in iter(int, 1)])\n1",
  "b = bytearray(480 * 1024 * 1024)\nhold = [b]",
  "import os\nfor i in range(100):\n    open(f'/tmp/f{i}', 'wb').write(os.urandom(4 << 20))",
  "print('x' * (4 << 20))",
];

/** Hostile sessions, one attack after another; their answers are not checked, only counted. */
async function hostile(server: TestServer, until: number, which: number): Promise<void> {
  let id = await session(server);
  for (let k = which; performance.now() < until; k++) {
    const code = HOSTILE[k % HOSTILE.length];
    counts.hostile++;
    try {
      if (code.startsWith("print")) {
        // A streamed 4 MiB output that the client never reads.
        const res = await fetch(`${server.url}/v1/sessions/${id}`, {
          method: "POST",
          headers: { Authorization: `Bearer ${server.token}`, Accept: "text/event-stream" },
          body: JSON.stringify({ code }),
        });
        if (res.status >= 500) counts.status5xx++;
        await sleep(2000);
        await res.body?.cancel();
      } else if (!await exec(server, id, code)) {
        counts.refused++;
        id = await session(server);
      }
    } catch {
      counts.refused++;
    }
    await sleep(300);
  }
}

/** Opens MCP sessions and never uses them, until the server says it is full. */
async function mcpFlood(server: TestServer, until: number): Promise<void> {
  while (performance.now() < until) {
    const res = await fetch(`${server.url}/mcp`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${server.token}`,
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, ...INITIALIZE }),
    });
    if (res.status >= 500 && res.status !== 503) counts.status5xx++;
    await res.body?.cancel();
    await sleep(res.status === 503 ? 2000 : 50);
  }
}

/** `/health` times from the prober worker (scripts/soak_probe.ts), until `minutes` are up. */
function isolatedProbes(server: TestServer, minutes: number): Promise<void> {
  const worker = new Worker(new URL("./soak_probe.ts", import.meta.url), { type: "module" });
  const done = Promise.withResolvers<void>();
  worker.onmessage = (e: MessageEvent<{ ms: number; at: number } | "done">) => {
    if (e.data !== "done") {
      isolated.push(e.data.ms);
      if (e.data.ms > SLOW_MS) slow.push(e.data);
      return;
    }
    worker.terminate();
    done.resolve();
  };
  worker.postMessage({ url: server.url, until: Date.now() + minutes * 60_000 });
  return done.promise;
}

async function probes(server: TestServer, until: number): Promise<void> {
  while (performance.now() < until) {
    const t = performance.now();
    const res = await fetch(`${server.url}/health`);
    await res.body?.cancel();
    health.push(performance.now() - t);
    const rss = await rssBytes(server.pid!);
    peakRss = Math.max(peakRss, rss);
    rssSamples.all++;
    if (rss > BUDGET_MB * 2 ** 20) {
      rssSamples.over++;
      rssSamples.longest = Math.max(rssSamples.longest, ++rssSamples.run);
    } else rssSamples.run = 0;
    await sleep(100);
  }
}

await using server = await startServer({ policyText: POLICY });
console.log(`soak: ${minutes} min against ${server.url} (budget ${BUDGET_MB} MB)…`);
const until = performance.now() + minutes * 60_000;
await Promise.all([
  probes(server, until),
  isolatedProbes(server, minutes),
  mcpFlood(server, until),
  ...Array.from({ length: 6 }, () => agent(server, until)),
  ...Array.from({ length: 3 }, (_, i) => hostile(server, until, i * 2)),
]);
/**
 * What the server logged around the slowest `/health` probes (`--why`): the audit lines within a
 * second before each, by event, to see what the server was doing meanwhile.
 */
function around(stdout: string, probes: { ms: number; at: number }[]): string {
  const lines = stdout.split("\n").flatMap((l) => {
    try {
      const { time, event } = JSON.parse(l);
      return [{ t: Date.parse(time), event: String(event) }];
    } catch {
      return [];
    }
  });
  return probes.toSorted((a, b) => b.ms - a.ms).slice(0, 10).map((p) => {
    const near = new Map<string, number>();
    for (const l of lines) {
      if (l.t >= p.at - 1000 && l.t <= p.at + p.ms) near.set(l.event, (near.get(l.event) ?? 0) + 1);
    }
    return `  ${p.ms.toFixed(0)} ms at ${new Date(p.at).toISOString()}: ` +
      [...near].map(([e, n]) => `${e}×${n}`).join(", ");
  }).join("\n");
}

/** `p50 …, p99 …, max …` of a list of times in ms. */
function quantiles(times: number[]): string {
  const sorted = times.toSorted((a, b) => a - b);
  const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
  return `p50 ${p(0.5).toFixed(1)} ms, p99 ${p(0.99).toFixed(1)} ms, max ${
    sorted.at(-1)!.toFixed(0)
  } ms (${sorted.length} probes)`;
}

console.log(`normal calls: ${counts.calls}, lost: ${counts.lost}, wrong answers: ${counts.wrong}`);
console.log(`hostile requests: ${counts.hostile} (${counts.refused} answered with an error)`);
console.log(`5xx answers: ${counts.status5xx}`);
console.log(`/health from a prober of its own: ${quantiles(isolated)}; target p99 ≤ 50 ms`);
console.log(`/health from the soak's own busy loop: ${quantiles(health)}`);
console.log(
  `peak resident memory: ${
    Math.round(peakRss / 2 ** 20)
  } MB against a budget of ${BUDGET_MB} MB; ` +
    `over it in ${rssSamples.over} of ${rssSamples.all} samples (~0.1 s apart), ` +
    `at most ${rssSamples.longest} in a row`,
);
if (Deno.args.includes("--why")) {
  console.log(`slowest /health probes, and what the server logged in the second before:`);
  console.log(around(server.stdout + server.stderr, slow));
}
