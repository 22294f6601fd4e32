/**
 * Host tools (PROTOCOL.md §6): sandboxed code calls tools that run outside the sandbox, as plain
 * synchronous functions; a streamed call's client answers each `tool_call` event at
 * `…/tool-results`, and Python goes on with the result and all its state.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";
import { type Event, stream } from "./helpers/sse.ts";

type Answerer = (name: string, args: Record<string, unknown>) => unknown;

const WEATHER = {
  name: "weather",
  description: "The weather in a city.",
  parameters: {
    type: "object",
    properties: { city: { type: "string" }, unit: { type: "string" } },
    required: ["city"],
  },
};

/** Runs a streamed call, answering each tool call with `answer` (`{error}` or `{result}`). */
async function runWithTools(
  server: TestServer,
  path: string,
  body: Record<string, unknown>,
  answer: Answerer,
): Promise<{ events: Event[]; answer: Record<string, unknown>; posts: Response[] }> {
  const events: Event[] = [];
  const posts: Response[] = [];
  const base = path === "/" ? "" : path;
  for await (const event of stream(server, path, body)) {
    events.push(event);
    if (event.event !== "tool_call") continue;
    const call = JSON.parse(event.data);
    const res = await server.request(`${base}/tool-results`, {
      method: "POST",
      body: JSON.stringify({ id: call.id, ...answer(call.name, call.arguments) as object }),
    });
    await res.body?.cancel();
    posts.push(res);
  }
  const last = events.at(-1)!;
  assert.equal(last.event, "result", last.data);
  return { events, answer: JSON.parse(last.data), posts };
}

Deno.test("host tools: Python calls a client's tool like a function and keeps its state", async (t) => {
  await using server = await startServer();
  const id = await server.createSession();
  const path = `/v1/sessions/${id}`;

  await t.step(
    "a result comes back as a Python value; output before the call comes first",
    async () => {
      const { events, answer, posts } = await runWithTools(server, path, {
        code: "print('asking')\nr = weather('Paris', unit='C')\nprint('got', r)\nr['temp'] + 1",
        tools: [WEATHER],
      }, (name, args) => ({ result: { name, args, temp: 20 } }));
      assert.equal(answer.error, null, JSON.stringify(answer.error));
      assert.equal(answer.result, 21);
      assert.deepEqual(posts.map((p) => p.status), [204]);
      const kinds = events.map((e) => e.event);
      assert.ok(kinds.indexOf("stdout") < kinds.indexOf("tool_call"), kinds.join());
      const call = JSON.parse(events.find((e) => e.event === "tool_call")!.data);
      assert.deepEqual(call.arguments, { city: "Paris", unit: "C" });
      assert.equal(call.name, "weather");
      assert.match(answer.stdout as string, /asking\ngot \{'name': 'weather'/);
    },
  );

  await t.step("a tool exists only during its call; the session's state stays", async () => {
    const after = await server.exec("r['temp'], 'weather' in globals()", { session: id });
    assert.deepEqual(after.result, [20, false]);
  });

  await t.step("an error reaches Python as ToolError with the client's text", async () => {
    const { answer } = await runWithTools(server, path, {
      code: "from moat_tools import ToolError as T\ntry:\n    weather(city='x')\n" +
        "except ToolError as e:\n    out = (type(e).__name__, str(e), T is ToolError, " +
        "isinstance(e, Exception))\nout",
      tools: [WEATHER],
    }, () => ({ error: "quota exceeded" }));
    assert.deepEqual(answer.result, ["ToolError", "quota exceeded", true, true]);
  });

  await t.step("an uncaught ToolError is an ordinary Python error for the model", async () => {
    const { answer } = await runWithTools(server, path, {
      code: "weather('x')",
      tools: [WEATHER],
    }, () => ({ error: "no such city" }));
    const error = answer.error as Record<string, string>;
    assert.equal(error.pythonExceptionType, "ToolError");
    assert.equal(error.pythonExceptionValue, "no such city");
    assert.doesNotMatch(error.message, /\/work|\.ts|moat_tools|lockdown/);
  });

  await t.step(
    "a tool called on a call that does not stream raises ToolError saying so",
    async () => {
      const answer = await server.post(path, { code: "weather('x')", tools: [WEATHER] });
      assert.equal(answer.status, 200);
      assert.equal(answer.body.error.pythonExceptionType, "ToolError");
      assert.match(answer.body.error.pythonExceptionValue, /streamed call.*text\/event-stream/);
    },
  );
});
