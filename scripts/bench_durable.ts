/**
 * The durability rows of `deno task bench` (issue 18), each a self-contained function that
 * starts its own servers and returns its rows: restore p50/p99 after a restart and from
 * hibernation (restores go into a prepared worker, see `Pool.restore`).
 */
import { startServer, type TestServer } from "../test/helpers/server.ts";

/** One line of the bench's table. */
export interface DurableRow {
  what: string;
  value: string;
  target?: string;
  met?: boolean;
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function run(server: TestServer, id: string, code: string, sync = false) {
  const answer = await server.exec(code, { session: id, sync });
  if (answer.error) throw new Error(`bench call failed: ${answer.error.message}`);
  return answer;
}

async function untilHibernated(server: TestServer, id: string): Promise<void> {
  for (const until = Date.now() + 60_000; Date.now() < until;) {
    const info = await server.request(`/v1/sessions/${id}`).then((r) => r.json());
    if (info.state === "hibernated") return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`session ${id} did not hibernate within 60 s`);
}

/** Restores one session per call, one after the other (each may use the prepared worker). */
async function restoreEach(server: TestServer, ids: string[], gapMs: number): Promise<number[]> {
  const times: number[] = [];
  for (const [i, id] of ids.entries()) {
    // Restores arrive apart, as sessions come back one by one; the gap lets the pool prepare.
    await new Promise((r) => setTimeout(r, gapMs));
    const answer = await run(server, id, "state['step']");
    if (answer.restored !== true || answer.result !== i) {
      throw new Error(`session ${id} was not restored: ${JSON.stringify(answer).slice(0, 300)}`);
    }
    times.push(answer.restoreMs);
  }
  return times;
}

/**
 * Restore p50/p99 (the answers' `restoreMs`: store read, unseal, boot from the checkpoint) from
 * hibernation, then after a restart (SIGTERM, a new server on the same kv store).
 */
export async function restoreTimes(quick: boolean, say: (line: string) => void, gapMs = 300) {
  const n = quick ? 8 : 20;
  say(`durable: restore p50/p99, ${n} sessions from hibernation, then after a restart…`);
  const dir = await Deno.makeTempDir({ prefix: "moat-bench-durable-" });
  const env = { MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  sessions: 40\n  poolSize: 2\n  hibernateAfterSeconds: 1\n";
  const rows: DurableRow[] = [];
  const row = (what: string, times: number[]) => {
    const p50 = quantile(times, 0.5);
    rows.push({
      what,
      value: `${p50.toFixed(0)} ms / ${quantile(times, 0.99).toFixed(0)} ms`,
      target: "p50 ≤ 50 ms",
      met: p50 <= 50,
    });
    say(`  ${what}: ${rows.at(-1)!.value}`);
  };
  try {
    const ids: string[] = [];
    {
      await using server = await startServer({ env, policyText });
      for (let i = 0; i < n; i++) {
        const id = await server.createSession();
        await run(server, id, `state = {"step": ${i}, "xs": list(range(1000))}`, true);
        ids.push(id);
      }
      for (const id of ids) await untilHibernated(server, id);
      row(
        `restore from hibernation (restoreMs p50 / p99, ${n} sessions)`,
        await restoreEach(server, ids, gapMs),
      );
      server.kill("SIGTERM");
      await server.exited();
    }
    await using second = await startServer({ env, policyText });
    row(
      `restore after a restart (restoreMs p50 / p99, ${n} sessions)`,
      await restoreEach(second, ids, gapMs),
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return rows;
}

// `deno run -A scripts/bench_durable.ts [--quick] [--gap-ms=N]`: these rows alone, restores N ms
// apart (300 by default, as in `deno task bench`).
if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const gap = Number(Deno.args.find((a) => a.startsWith("--gap-ms="))?.slice(9) ?? 300);
  const rows = await restoreTimes(quick, (line) => console.error(`bench: ${line}`), gap);
  for (const r of rows) {
    console.log(`${r.what}  ${r.value}  target ${r.target}: ${r.met ? "met" : "NOT met"}`);
  }
}
