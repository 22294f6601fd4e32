/**
 * Python that would run after its call has ended (an asyncio task the cell scheduled, a callback
 * on the event loop, a method of the session's own Task subclass) never holds a session: tasks
 * do not outlive their call, and every request to an interpreter has a deadline, past which it
 * is interrupted, then replaced. No request goes unanswered.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";

const POLICY = "limits:\n  poolSize: 1\n  timeoutMs: 2000\n  graceMs: 300\n";

/** A file upload that must be answered (the test fails, not hangs, if it is not). */
async function upload(server: TestServer, id: string, name: string) {
  const res = await fetch(`${server.url}/v1/sessions/${id}/files/${name}`, {
    method: "PUT",
    headers: { Authorization: `Bearer ${server.token}` },
    body: "hello",
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.json() };
}

Deno.test("a task a call scheduled does not outlive the call", async (t) => {
  await using server = await startServer({ policyText: POLICY });

  await t.step(
    "a spinning task is cancelled before it ever runs; files and calls go on",
    async () => {
      const id = await server.createSession();
      const code = "import asyncio\nasync def spin():\n    while True:\n        pass\n" +
        "task = asyncio.ensure_future(spin())\n'scheduled'";
      const started = await server.exec(code, { session: id });
      assert.equal(started.error, null, started.error?.message);
      assert.equal(started.result, "scheduled");
      assert.match(started.stderr, /1 asyncio task .*cancelled/);
      const put = await upload(server, id, "a.txt");
      assert.equal(put.status, 201, JSON.stringify(put.body));
      const next = await server.exec("task.cancelled(), 6 * 7", { session: id });
      assert.deepEqual(next.result, [true, 42]);
    },
  );

  await t.step(
    "a task that swallows its cancellation is stopped within the call's limit",
    async () => {
      const id = await server.createSession();
      const code = "import asyncio\nasync def stubborn():\n    while True:\n        try:\n" +
        "            await asyncio.sleep(10)\n        except asyncio.CancelledError:\n" +
        "            while True:\n                pass\n" +
        "task = asyncio.ensure_future(stubborn())\nawait asyncio.sleep(0)\nkept = 'yes'\n'started'";
      const answer = await server.exec(code, { session: id });
      assert.ok(answer.error === null || answer.error.pythonExceptionType === "TimeoutError");
      const put = await upload(server, id, "b.txt");
      assert.equal(put.status, 201, JSON.stringify(put.body));
      const next = await server.exec("6 * 7", { session: id });
      assert.equal(next.result, 42, JSON.stringify(next));
    },
  );

  await t.step("a checkpoint never calls a method of the session's own Task subclass", async () => {
    const id = await server.createSession();
    const define = "import asyncio\nclass Sticky(asyncio.Task):\n    def done(self):\n" +
      "        while True:\n            pass\n    def get_name(self):\n        while True:\n" +
      "            pass\n    def get_coro(self):\n        while True:\n            pass\n" +
      "kept = 'yes'";
    const defined = await server.exec(define, { session: id, sync: true });
    assert.equal(defined.error, null, defined.error?.message);
    assert.equal(defined.checkpoint?.ok, true, JSON.stringify(defined.checkpoint));
    // A Sticky task made by a later call: the call's own end may spin in `done` (its own code,
    // within its limit); the checkpoint after it must not.
    await server.exec("async def wait():\n    await asyncio.sleep(3600)\nt = Sticky(wait())", {
      session: id,
    });
    const put = await upload(server, id, "c.txt");
    assert.equal(put.status, 201, JSON.stringify(put.body));
    // The next call's end lists the tasks, which runs Sticky.done: the session's own code,
    // within that call's limit (it may time out, keeping its state); then the session goes on.
    let next = await server.exec("kept", { session: id, sync: true });
    if (next.error) {
      assert.equal(next.error.pythonExceptionType, "TimeoutError", JSON.stringify(next));
      next = await server.exec("kept", { session: id, sync: true });
    }
    assert.equal(next.result, "yes", JSON.stringify(next));
    assert.equal(next.checkpoint?.ok, true, JSON.stringify(next.checkpoint));
  });
});

Deno.test("Python on the event loop between calls cannot hold the next request", async () => {
  await using server = await startServer({ policyText: POLICY });
  const id = await server.createSession();
  const code = "import asyncio\ndef spin():\n    while True:\n        pass\n" +
    "asyncio.get_event_loop().call_later(0.2, spin)\nkept = 'yes'\n'scheduled'";
  const started = await server.exec(code, { session: id });
  assert.equal(started.result, "scheduled", JSON.stringify(started));
  await new Promise((r) => setTimeout(r, 500)); // the callback is spinning now
  const put = await upload(server, id, "d.txt");
  // Interrupted (the callback gets KeyboardInterrupt, the session lives) or, where the
  // interrupt cannot land, the interpreter replaced and the request told why.
  assert.ok(
    put.status === 201 || (put.status === 503 && /did not answer/.test(put.body.error.message)),
    JSON.stringify(put),
  );
  // The session lives on; or, where its interpreter had to be replaced, the next call is told
  // that its state is gone (never a silent fresh start), and the one after runs.
  let next = await server.exec("6 * 7", { session: id });
  if (next.result !== 42) {
    assert.match(next.error?.message ?? "", /lost|replaced/, JSON.stringify(next));
    next = await server.exec("6 * 7", { session: id });
  }
  assert.equal(next.result, 42, JSON.stringify(next));
});
