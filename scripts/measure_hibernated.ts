/**
 * Server RSS with 20 and then 120 hibernated sessions, and after deleting them all: shows whether
 * what each hibernated session seems to cost is held by the sessions (issue 18 item 6).
 * `deno run -A scripts/measure_hibernated.ts`
 */
import { startServer } from "../test/helpers/server.ts";
const dir = await Deno.makeTempDir();
const rss = async (pid: number) => {
  const s = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(s.match(/VmRSS:\s+(\d+)/)![1]) / 1024;
};
const server = await startServer({
  env: { MOAT_STORE: `kv:${dir}/store.kv` },
  policyText: "limits:\n  sessions: 4\n  poolSize: 1\n  hibernateAfterSeconds: 1\n",
});
const pid = server.pid!;
await new Promise((r) => setTimeout(r, 3000));
const ids: string[] = [];
const make = async (i: number) => {
  const id = await server.createSession();
  await server.exec(`state = {"step": ${i}, "xs": list(range(1000))}`, { session: id, sync: true });
  ids.push(id);
};
const zero = await rss(pid);
for (let i = 0; i < 20; i++) await make(i);
await new Promise((r) => setTimeout(r, 8000));
const empty = await rss(pid);
for (let i = 0; i < 100; i++) {
  await make(i + 20);
}
await new Promise((r) => setTimeout(r, 8000));
const full = await rss(pid);
for (const id of ids) await server.request(`/v1/sessions/${id}`, { method: "DELETE" });
await new Promise((r) => setTimeout(r, 5000));
const deleted = await rss(pid);
console.log(
  `RSS MB: empty server ${zero.toFixed(0)}; 20 hibernated ${empty.toFixed(0)}; 120 hibernated ${
    full.toFixed(0)
  } (+${((full - empty) / 100 * 1024).toFixed(0)} KB each for the last 100); all deleted ${
    deleted.toFixed(0)
  }`,
);
await server[Symbol.asyncDispose]();
