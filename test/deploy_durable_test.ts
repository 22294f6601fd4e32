/**
 * Deno Deploy stops an idle instance with SIGINT and kills it 5 s later: in deploy mode every
 * live session is checkpointed within that time, and the next instance restores it.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

Deno.test("in deploy mode SIGINT checkpoints live sessions in time, and a new instance restores them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-deploy-durable-" });
  const env = { MOAT_STORE: `kv:${dir}/store.kv`, MOAT_POLICY: "deploy" };
  let id: string;
  try {
    {
      await using first = await startServer({ deploy: true, env });
      assert.match(first.stderr, /deploy mode/);
      id = await first.createSession();
      const setup = await first.exec("kept = [1, 2, 3]\ndef total():\n    return sum(kept)", {
        session: id,
      });
      assert.equal(setup.error, null, setup.error?.message);
      await first.exec("at_root = 'yes'");
      const stopped = performance.now();
      first.kill("SIGINT");
      assert.equal((await first.exited()).code, 0);
      const ms = performance.now() - stopped;
      assert.ok(ms < 5000, `stopped after ${Math.round(ms)} ms, past Deploy's 5 s`);
    }
    await using second = await startServer({ deploy: true, env });
    const answer = await second.exec("total()", { session: id });
    assert.equal(answer.error, null, answer.error?.message);
    assert.equal(answer.result, 6);
    assert.equal(answer.restored, true);
    assert.equal((await second.exec("at_root")).result, "yes");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
