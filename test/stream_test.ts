/**
 * Live output: an execute call with `Accept: text/event-stream` streams `stdout`/`stderr` events
 * while the code runs, then one `result` event holding the plain answer.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";
import { collect, type Event, stream } from "./helpers/sse.ts";

const text = (events: Event[], name: string) =>
  events.filter((e) => e.event === name).map((e) => JSON.parse(e.data)).join("");

/** The answer without what differs between two runs of the same code. */
function stable(answer: Record<string, unknown>) {
  const { durationMs: _d, resources, ...rest } = answer as {
    durationMs: number;
    resources: Record<string, unknown>;
  };
  const { durationMs: _r, memoryBytes: _m, ...kept } = resources;
  // Tracebacks name the cell by its number in the session.
  return JSON.parse(JSON.stringify({ ...rest, resources: kept }).replace(/<cell \d+>/g, "<cell>"));
}

Deno.test("a streaming call sends its output as it prints, then the plain answer", async (t) => {
  await using server = await startServer();
  const id = await server.createSession();

  await t.step("output arrives while the call is still running", async () => {
    const code =
      "import sys, time\nprint('first', flush=True)\ntime.sleep(3)\nprint('oops', file=sys.stderr)\n42";
    const events: Event[] = [];
    let busyAtFirst: boolean | undefined;
    for await (const e of stream(server, `/v1/sessions/${id}`, { code })) {
      if (events.length === 0) {
        busyAtFirst = (await (await server.request(`/v1/sessions/${id}`)).json()).busy;
      }
      events.push(e);
    }
    assert.deepEqual(events[0], { event: "stdout", data: JSON.stringify("first\n") });
    assert.equal(busyAtFirst, true, "the first event came before the call ended");
    assert.equal(text(events, "stderr"), "oops\n");
    const last = events.at(-1)!;
    assert.equal(last.event, "result");
    assert.equal(events.filter((e) => e.event === "result").length, 1);
    const answer = JSON.parse(last.data);
    assert.equal(answer.result, 42);
    assert.equal(answer.stdout, "first\n");
  });

  await t.step("the result event is exactly the answer a plain call gives", async () => {
    const code = "print('a\\r\\nb\\u00e9\\U0001f600')\nraise ValueError('no')";
    const events = await collect(server, `/v1/sessions/${id}`, { code });
    const plain = await server.exec(code, { session: id });
    const streamed = JSON.parse(events.at(-1)!.data);
    assert.deepEqual(stable(streamed), stable(plain));
    assert.equal(text(events, "stdout"), plain.stdout, "every character survives the stream");
    assert.equal(streamed.error.pythonExceptionType, "ValueError");
  });

  await t.step("output is batched, not one event per line", async () => {
    const events = await collect(server, "/", { code: "for i in range(10000):\n    print(i)" });
    const out = events.filter((e) => e.event === "stdout");
    assert.equal(
      text(events, "stdout"),
      Array.from({ length: 10000 }, (_, i) => `${i}\n`).join(""),
    );
    assert.ok(out.length < 100, `${out.length} events for 10 000 lines`);
  });

  await t.step("a call awaiting between prints streams each print", async () => {
    const code = "import asyncio\nfor i in range(3):\n    print(i)\n    await asyncio.sleep(0.2)";
    const events = await collect(server, "/", { code });
    assert.deepEqual(events.filter((e) => e.event === "stdout").map((e) => JSON.parse(e.data)), [
      "0\n",
      "1\n",
      "2\n",
    ]);
  });

  await t.step("an unknown session or a bad body is a plain JSON error, not a stream", async () => {
    for (
      const [path, body, status] of [["/v1/sessions/nope", { code: "1" }, 404], [
        "/",
        { code: 1 },
        400,
      ]] as const
    ) {
      const res = await server.request(path, {
        method: "POST",
        headers: { accept: "text/event-stream" },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, status);
      assert.match(res.headers.get("content-type")!, /json/);
      assert.ok((await res.json()).error.name);
    }
  });
});

Deno.test("the output caps hold for the stream as for the answer", async () => {
  await using server = await startServer({
    policyText: "limits:\n  stdoutBytes: 1000\n  stderrBytes: 500\n",
  });
  const code =
    "import sys\nfor i in range(2000):\n    print('x' * 9)\n    print('y' * 9, file=sys.stderr)";
  const events = await collect(server, "/", { code });
  assert.equal(text(events, "stdout"), "xxxxxxxxx\n".repeat(100));
  assert.equal(text(events, "stderr"), "yyyyyyyyy\n".repeat(50));
  const answer = JSON.parse(events.at(-1)!.data);
  assert.deepEqual(answer.resources.cut, { stdout: true, stderr: true, result: false });
});

Deno.test("a client that disconnects mid-call does not stop the call", async () => {
  await using server = await startServer();
  const id = await server.createSession();
  const code =
    "import time\nprint('started', flush=True)\ntime.sleep(1)\nfinished = 'yes'\nprint('never read')";
  for await (const e of stream(server, `/v1/sessions/${id}`, { code })) {
    assert.equal(e.event, "stdout");
    break; // closes the connection mid-call
  }
  // Queued behind the abandoned call, which ran to its end and kept its state.
  const answer = await server.exec("finished", { session: id });
  assert.equal(answer.result, "yes");
  const info = await (await server.request(`/v1/sessions/${id}`)).json();
  assert.equal(info.calls, 2);
});
