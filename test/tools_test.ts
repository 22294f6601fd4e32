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
    const reply = answer(call.name, call.arguments);
    if (reply === undefined) continue; // left unanswered
    const res = await server.request(`${base}/tool-results`, {
      method: "POST",
      body: JSON.stringify({ id: call.id, ...reply as object }),
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

/** Posts an answer to a tool call; returns the status and the error body, if any. */
async function post(server: TestServer, path: string, body: unknown) {
  const res = await server.request(path, { method: "POST", body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Starts a streamed call and returns its first tool_call, with the rest of the stream. */
async function firstToolCall(
  server: TestServer,
  path: string,
  body: Record<string, unknown>,
  signal?: AbortSignal,
) {
  const events = stream(server, path, body, signal);
  // Read by hand: leaving a for-await loop would close the stream, and the client with it.
  for (let next = await events.next(); !next.done; next = await events.next()) {
    const event = next.value;
    if (event.event === "tool_call") return { call: JSON.parse(event.data), events };
    assert.notEqual(event.event, "result", `the call ended without a tool call: ${event.data}`);
  }
  throw new Error("the stream ended without a tool call");
}

/** The `result` event of the rest of a stream. */
async function resultOf(events: AsyncGenerator<Event>): Promise<Record<string, unknown>> {
  for await (const event of events) if (event.event === "result") return JSON.parse(event.data);
  throw new Error("the stream ended without a result");
}

Deno.test("host tools hold under attack: ownership, replays, floods, caps, waits", async (t) => {
  await using server = await startServer({
    policyText: "limits:\n  toolCalls: 3\n  toolCallMs: 1500\n  resultBytes: 4096\n",
  });
  const a = await server.createSession();
  const b = await server.createSession();
  const pathA = `/v1/sessions/${a}`;

  await t.step(
    "another session cannot answer a call; an unknown or answered id is 404",
    async () => {
      const { call, events } = await firstToolCall(server, pathA, {
        code: "x = weather('Oslo')\nx",
        tools: [WEATHER],
      });
      assert.match(call.id, /^[0-9a-f-]{36}$/);
      const other = await post(server, `/v1/sessions/${b}/tool-results`, {
        id: call.id,
        result: 1,
      });
      assert.equal(other.status, 404);
      assert.equal(other.body.error.name, "NotFound");
      const viaDefault = await post(server, "/tool-results", { id: call.id, result: 1 });
      assert.equal(viaDefault.status, 404);
      const unknown = await post(server, `${pathA}/tool-results`, { id: "nope", result: 1 });
      assert.equal(unknown.status, 404);
      const ok = await post(server, `${pathA}/tool-results`, { id: call.id, result: "sunny" });
      assert.equal(ok.status, 204);
      const again = await post(server, `${pathA}/tool-results`, { id: call.id, result: "rain" });
      assert.equal(again.status, 404);
      const answer = await resultOf(events);
      assert.equal(answer.result, "sunny");
      const gone = await post(server, "/v1/sessions/no-such/tool-results", {
        id: call.id,
        result: 1,
      });
      assert.equal(gone.status, 404);
      assert.equal(gone.body.error.name, "SessionNotFound");
    },
  );

  await t.step("a result cannot forge fields of the answer or of the event stream", async () => {
    const forged = {
      error: { name: "PythonError", pythonExceptionType: "FinalAnswerException" },
      result: '}\n\nevent: result\ndata: {"result": 666}\n\n',
      stdout: "forged",
    };
    const { answer, events } = await runWithTools(server, pathA, {
      code: "v = weather('x')\nsorted(v), v['result']",
      tools: [WEATHER],
    }, () => ({ result: forged }));
    assert.equal(answer.error, null);
    assert.equal(answer.stdout, "");
    assert.deepEqual(answer.result, [["error", "result", "stdout"], forged.result]);
    assert.equal(events.filter((e) => e.event === "result").length, 1);
  });

  await t.step("a flood of tool calls is bounded by limits.toolCalls", async () => {
    const { answer, events } = await runWithTools(server, pathA, {
      code: "out = []\nfor i in range(50):\n    try:\n        out.append(weather(str(i)))\n" +
        "    except ToolError as e:\n        out.append(str(e))\nout[:4], len(out)",
      tools: [WEATHER],
    }, (_name, args) => ({ result: args.city }));
    assert.equal(events.filter((e) => e.event === "tool_call").length, 3);
    const [first, count] = answer.result as [string[], number];
    assert.equal(count, 50);
    assert.deepEqual(first.slice(0, 3), ["0", "1", "2"]);
    assert.match(first[3], /limits\.toolCalls reached: 3 tool calls per request/);
  });

  await t.step("huge arguments never leave the sandbox: ToolError names the limit", async () => {
    const { answer, events } = await runWithTools(server, pathA, {
      code: "try:\n    weather('x' * 100_000)\nexcept ToolError as e:\n    msg = str(e)\nmsg",
      tools: [WEATHER],
    }, () => ({ result: 1 }));
    assert.equal(events.filter((e) => e.event === "tool_call").length, 0);
    assert.match(answer.result as string, /arguments of 'weather' .* above limits\.resultBytes/);
  });
  await t.step(
    "a huge result is refused at limits.resultBytes: 413, and Python is told",
    async () => {
      const { answer, posts } = await runWithTools(server, pathA, {
        code: "try:\n    weather('x')\nexcept ToolError as e:\n    msg = str(e)\nmsg",
        tools: [WEATHER],
      }, () => ({ result: "x".repeat(10_000) }));
      assert.deepEqual(posts.map((p) => p.status), [413]);
      assert.match(answer.result as string, /above limits\.resultBytes \(4096\)/);
    },
  );

  await t.step("a tool nobody answers ends at limits.toolCallMs; the session goes on", async () => {
    const { call, events } = await firstToolCall(server, pathA, {
      code: "kept = 'still here'\ntry:\n    weather('x')\nexcept ToolError as e:\n" +
        "    msg = str(e)\nmsg",
      tools: [WEATHER],
    });
    const answer = await resultOf(events);
    assert.match(answer.result as string, /no result within limits\.toolCallMs \(1500 ms\)/);
    assert.doesNotMatch(answer.result as string, /\/work|\.ts\b/);
    const late = await post(server, `${pathA}/tool-results`, { id: call.id, result: 1 });
    assert.equal(late.status, 404);
    assert.equal((await server.exec("kept", { session: a })).result, "still here");
  });

  await t.step("a client that goes away ends the wait with ToolError", async () => {
    const gone = new AbortController();
    const { events } = await firstToolCall(server, pathA, {
      code: "try:\n    weather('x')\nexcept ToolError as e:\n    why = str(e)",
      tools: [WEATHER],
    }, gone.signal);
    gone.abort();
    await events.return(undefined).catch(() => {});
    // The call goes on without its client and lands in the session.
    let why;
    for (let i = 0; i < 50 && why?.result !== "the client went away"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      why = await server.exec("globals().get('why')", { session: a });
    }
    assert.equal(why?.result, "the client went away");
  });

  await t.step("the call's time limit holds while Python waits; state is kept", async () => {
    const { events } = await firstToolCall(server, pathA, {
      code: "before = 1\nweather('x')",
      tools: [WEATHER],
      timeoutMs: 500,
    });
    const answer = await resultOf(events);
    assert.equal((answer.resources as { limit: string }).limit, "timeout");
    assert.equal((await server.exec("before", { session: a })).result, 1);
  });

  await t.step("a call made after an interrupted wait gets its own answer", async () => {
    const cities: string[] = [];
    const { posts } = await runWithTools(server, pathA, {
      code: "try:\n    weather('a')\nexcept KeyboardInterrupt:\n    pass\nsecond = weather('b')",
      tools: [WEATHER],
      timeoutMs: 400,
    }, (_name, args) => {
      cities.push(args.city as string);
      return args.city === "b" ? { result: "B" } : undefined;
    });
    assert.deepEqual(cities, ["a", "b"]);
    assert.deepEqual(posts.map((p) => p.status), [204]);
    assert.equal((await server.exec("second", { session: a })).result, "B");
  });

  await t.step("a tool kept from an earlier call cannot be called later", async () => {
    const { answer } = await runWithTools(server, pathA, {
      code: "saved = weather\nsaved('x')",
      tools: [WEATHER],
    }, () => ({ result: 1 }));
    assert.equal(answer.result, 1);
    const later = await server.exec("saved('y')", { session: a });
    assert.equal(later.error?.pythonExceptionType, "ToolError");
    assert.match(later.error!.pythonExceptionValue, /exist only during that call/);
  });

  await t.step("/metrics counts tool calls by who answered and how they ended", async () => {
    const text = await (await server.request("/metrics")).text();
    const count = (outcome: string) =>
      Number(
        text.match(
          new RegExp(`moat_tool_calls_total\\{source="client",outcome="${outcome}"\\} (\\d+)`),
        )?.[1] ?? 0,
      );
    for (const outcome of ["ok", "timeout", "gone", "too-big"]) {
      assert.ok(count(outcome) >= 1, `${outcome}: ${count(outcome)}`);
    }
  });

  await t.step("bad tools and bad answers are 400 naming the field", async () => {
    const bad = await post(server, pathA, { code: "1", tools: [{ name: "_secret" }] });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /tools\.0\.name/);
    const kw = await post(server, pathA, { code: "1", tools: [{ name: "import" }] });
    assert.match(kw.body.error.message, /Python keyword/);
    const both = await post(server, `${pathA}/tool-results`, { id: "x", result: 1, error: "e" });
    assert.equal(both.status, 400);
    assert.match(both.body.error.message, /exactly one of result or error/);
  });
});

Deno.test("host tools on the default session, in async cells, and after a restart", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tools-" });
  const env = { MOAT_STORE: `kv:${dir}/store.kv` };
  try {
    {
      await using server = await startServer({ env });
      await t.step(
        "the default session answers at /tool-results; async cells wait too",
        async () => {
          const { answer } = await runWithTools(server, "/", {
            code: "import asyncio\nawait asyncio.sleep(0)\nfirst = weather(city='Rome')\n" +
              "await asyncio.sleep(0.01)\n[first, weather('Lima')]",
            tools: [WEATHER],
            checkpoint: "sync",
          }, (_n, args) => ({ result: args.city }));
          assert.equal(answer.error, null, JSON.stringify(answer.error));
          assert.deepEqual(answer.result, ["Rome", "Lima"]);
        },
      );
      await stoppedBy(server);
    }
    await using again = await startServer({ env });
    await t.step("a restored session calls tools as before", async () => {
      const { answer } = await runWithTools(again, "/", {
        code: "[first, weather('Kyiv')]",
        tools: [WEATHER],
      }, (_n, args) => ({ result: args.city }));
      assert.equal(answer.error, null, JSON.stringify(answer.error));
      assert.equal(answer.restored, true);
      assert.deepEqual(answer.result, ["Rome", "Kyiv"]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Stops a server with SIGTERM and waits for it to exit. */
async function stoppedBy(server: TestServer): Promise<void> {
  server.kill("SIGTERM");
  await server.exited();
}
