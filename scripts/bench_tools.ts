/**
 * The host tools rows of `deno task bench` (issue 20): the round trip of a tool call as Python
 * sees it (Python → the streaming client → Python), timed inside Python around each call, for a
 * client's tool over HTTP and for code mode's call to an upstream MCP server on loopback; and
 * outbound HTTP (issue 21): a `urllib` request from Python to a loopback server through the host,
 * against the same request made directly by this process.
 */
import type { DurableRow as Row } from "./bench_durable.ts";
import { startServer, type TestServer } from "../test/helpers/server.ts";
import { stream } from "../test/helpers/sse.ts";
import { startUpstream } from "../test/helpers/upstream_mcp.ts";

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const ms = (n: number) => n < 10 ? `${n.toFixed(2)} ms` : `${Math.round(n)} ms`;

const ECHO = {
  name: "echo",
  description: "Returns its argument.",
  parameters: { type: "object", properties: { n: { type: "integer" } } },
};

/** Python times `count` calls of `call` (an expression of `i`) and returns the milliseconds. */
function timedLoop(count: number, call: string): string {
  return `import time
times = []
for i in range(${count}):
    t = time.perf_counter()
    r = ${call}
    times.append((time.perf_counter() - t) * 1000)
times`;
}

/** A streamed call whose tool calls this process answers at once; Python's timings. */
async function clientTrips(server: TestServer, count: number): Promise<number[]> {
  let answer: { result: number[]; error: unknown } | undefined;
  const body = { code: timedLoop(count, "echo(i)"), tools: [ECHO], timeoutMs: 120_000 };
  for await (const event of stream(server, "/", body)) {
    if (event.event === "tool_call") {
      const call = JSON.parse(event.data);
      const res = await server.request("/tool-results", {
        method: "POST",
        body: JSON.stringify({ id: call.id, result: call.arguments.n }),
      });
      await res.body?.cancel();
    } else if (event.event === "result") answer = JSON.parse(event.data);
  }
  if (!answer || answer.error) throw new Error(`tool trips: ${JSON.stringify(answer)}`);
  return answer.result;
}

/** The host tool rows: a client's tool, and code mode's call to a loopback MCP server. */
export async function toolTrips(quick: boolean, say: (line: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  const count = quick ? 300 : 2000;
  say(`host tool round trips (${count} calls of a client's tool from Python)…`);
  {
    await using server = await startServer({
      policyText: `limits:\n  toolCalls: ${count + 10}\n  poolSize: 1\n`,
    });
    await clientTrips(server, 50); // warm-up
    const trips = await clientTrips(server, count);
    const p50 = quantile(trips, 0.5);
    rows.push({
      what: "host tool round trip, Python → client → Python (p50 / p99)",
      value: `${ms(p50)} / ${ms(quantile(trips, 0.99))}`,
      target: "p50 ≤ 2 ms",
      met: p50 <= 2,
    });
  }
  say(`code mode round trips (${count} calls of an upstream MCP server's tool)…`);
  await using upstream = startUpstream();
  await using server = await startServer({
    policyText: `limits:\n  toolCalls: ${count + 10}\n  poolSize: 1\n` +
      `tools:\n  mcp:\n    - name: up\n      url: ${upstream.url}\n`,
  });
  const run = async (n: number) => {
    const answer = await server.exec(
      `from moat_tools import up\n${timedLoop(n, "up.echo(n=i)")}`,
      { timeoutMs: 120_000 },
    );
    if (answer.error) throw new Error(`code mode trips: ${answer.error.message}`);
    return answer.result as number[];
  };
  await run(50);
  const trips = await run(count);
  rows.push({
    what: "code mode call to a loopback upstream MCP server (p50 / p99)",
    value: `${ms(quantile(trips, 0.5))} / ${ms(quantile(trips, 0.99))}`,
  });
  rows.push(...await outboundTrips(count, say));
  return rows;
}

/**
 * Outbound HTTP: a GET with `urllib.request` from Python through the host to a loopback server
 * (with a header the host adds), against the same GET by this process's `fetch`; the difference
 * of their medians is what going through Moat adds to a request.
 */
async function outboundTrips(count: number, say: (line: string) => void): Promise<Row[]> {
  say(`outbound HTTP (${count} urllib requests from Python to a loopback server)…`);
  const body = "x".repeat(1024);
  await using api = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(body),
  );
  const url = `http://127.0.0.1:${api.addr.port}/`;
  await using server = await startServer({
    policyText: `limits:\n  poolSize: 1\nnetwork:\n  allow:\n` +
      `    - host: "127.0.0.1:${api.addr.port}"\n      headers: { X-Key: "\${MOAT_BENCH_KEY}" }\n`,
    env: { MOAT_BENCH_KEY: "bench-key-0123456789" },
  });
  const run = async (n: number) => {
    const answer = await server.exec(
      `import urllib.request\n${timedLoop(n, `urllib.request.urlopen("${url}").read()`)}`,
      { timeoutMs: 120_000 },
    );
    if (answer.error) throw new Error(`outbound trips: ${answer.error.message}`);
    return answer.result as number[];
  };
  const direct = async (n: number) => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await (await fetch(url, { headers: { "x-key": "bench-key-0123456789" } })).arrayBuffer();
      times.push(performance.now() - t);
    }
    return times;
  };
  await run(50);
  await direct(50);
  // Interleaved halves, so both see the same load on a shared machine.
  const through = [...await run(count / 2), ...await run(count / 2)];
  const plain = [...await direct(count / 2), ...await direct(count / 2)];
  const added = quantile(through, 0.5) - quantile(plain, 0.5);
  return [
    {
      what: "outbound HTTP GET from Python's urllib through the host (p50 / p99)",
      value: `${ms(quantile(through, 0.5))} / ${ms(quantile(through, 0.99))}`,
    },
    {
      what: "  the same GET made directly by the host process (p50 / p99)",
      value: `${ms(quantile(plain, 0.5))} / ${ms(quantile(plain, 0.99))}`,
    },
    {
      what: "  added by going through Moat (difference of the p50s)",
      value: ms(added),
      target: "≤ 2 ms",
      met: added <= 2,
    },
  ];
}
