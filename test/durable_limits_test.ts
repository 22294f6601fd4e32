/**
 * An interpreter lost to a limit on a durable store comes back with the session's last
 * checkpoint, and the answer says so (`restored`, and `lost` naming what was not kept).
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

const TOKEN = "durable-limits-token-0123456789";

/** Code that ignores KeyboardInterrupt, so the time limit has to terminate its worker. */
const STUBBORN = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass";

Deno.test("an interpreter killed by its time limit comes back with its last checkpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-limits-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n  graceMs: 200\n";
  try {
    await using server = await startServer({ env, policyText });
    const id = await server.createSession();
    const saved = await server.exec("kept = 'before the kill'\nn = 1", { session: id, sync: true });
    assert.equal(saved.error, null, saved.error?.message);
    const killed = await server.exec(`after = 'never stored'\nn = 2\n${STUBBORN}`, {
      session: id,
      timeoutMs: 300,
    });
    assert.equal(killed.error?.pythonExceptionType, "TimeoutError");
    assert.equal(killed.restored, true, JSON.stringify(killed));
    assert.ok(Array.isArray(killed.lost) && killed.lost.length > 0, JSON.stringify(killed.lost));
    assert.match(JSON.stringify(killed.lost), /since the last checkpoint/);
    assert.match(killed.error!.message, /last checkpoint/);
    const next = await server.exec("[kept, n, 'after' in globals()]", { session: id });
    assert.equal(next.error, null, next.error?.message);
    assert.deepEqual(next.result, ["before the kill", 1, false]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without a checkpoint, an interpreter killed by its time limit starts empty, as before", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-limits-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: "memory" };
  const policyText = "limits:\n  poolSize: 1\n  graceMs: 200\n";
  try {
    await using server = await startServer({ env, policyText });
    const id = await server.createSession();
    await server.exec("kept = 1", { session: id });
    const killed = await server.exec(STUBBORN, { session: id, timeoutMs: 300 });
    assert.equal(killed.error?.pythonExceptionType, "TimeoutError");
    assert.equal(killed.restored, undefined);
    const next = await server.exec("'kept' in globals()", { session: id });
    assert.equal(next.result, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
