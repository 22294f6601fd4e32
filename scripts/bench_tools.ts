/**
 * The host tools rows of `deno task bench` (issue 20): the round trip of a tool call as Python
 * sees it (Python → the streaming client → Python), timed inside Python around each call, for a
 * client's tool over HTTP and for code mode's call to an upstream MCP server on loopback.
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
  return rows;
}
