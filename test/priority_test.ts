/**
 * Interpreters run below the thread that serves HTTP (src/worker/priority.ts): under load from
 * code spinning in sessions, `/health` and answers keep their pace.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

/** `tid → nice` of every thread of `pid`, from `ps` (Deno reads /proc only with --allow-all). */
async function niceByThread(pid: number): Promise<Map<number, number>> {
  const out = await new Deno.Command("ps", { args: ["-L", "-o", "tid=,ni=", "-p", String(pid)] })
    .output();
  const rows = new TextDecoder().decode(out.stdout).trim().split("\n");
  return new Map(rows.map((r) => r.trim().split(/\s+/).map(Number) as [number, number]));
}

Deno.test("interpreters' threads run below the main thread", async () => {
  await using server = await startServer({ policyText: "limits:\n  poolSize: 2\n" });
  const id = await server.createSession();
  assert.equal((await server.exec("6 * 7", { session: id })).result, 42);
  const nice = await niceByThread(server.pid!);
  assert.equal(nice.get(server.pid!), 0, "the main thread keeps the server's priority");
  // The session's interpreter and the pool's prepared ones.
  const lowered = [...nice.values()].filter((n) => n === 15).length;
  assert.ok(lowered >= 2, `threads at nice 15: ${lowered} (${JSON.stringify([...nice])})`);
  // Python cannot raise it back: the permission is gone once the interpreter is booted.
  const body = await server.exec(
    "import os\ntry:\n    os.setpriority(os.PRIO_PROCESS, 0, 0)\n    r = 'changed'\n" +
      "except Exception as e:\n    r = type(e).__name__\nr",
    { session: id },
  );
  assert.notEqual(body.result, "changed", JSON.stringify(body));
  assert.equal((await niceByThread(server.pid!)).get(server.pid!), 0);
});
