/**
 * Attacks on the limits: time and the interrupt, memory, stack, output, the session count, and
 * crossing from one session into another.
 */
import assert from "node:assert/strict";
import { startServer } from "../helpers/server.ts";
import { assertHealthy, expectRefused } from "./attempts.ts";

const POLICY = `
limits:
  timeoutMs: 1500
  maxTimeoutMs: 3000
  graceMs: 500
  memoryMb: 256
  stdoutBytes: 65536
  stderrBytes: 65536
  resultBytes: 65536
  sessions: 4
  queuedCalls: 1
  poolSize: 1
`;

/** Time limit plus grace plus slack for booting a replacement: no call may take longer. */
const BOUND_MS = 3000 + 500 + 4000;

Deno.test("the limits hold against code that tries to exhaust them", async (t) => {
  await using server = await startServer({ policyText: POLICY });

  const timed = async (code: string, extra: Record<string, unknown> = {}) => {
    const started = performance.now();
    const { status, body } = await server.post("/", { code, ...extra });
    assert.equal(status, 200);
    const ms = performance.now() - started;
    assert.ok(ms < BOUND_MS, `took ${ms} ms`);
    return body;
  };

  // Time and the interrupt
  await t.step("a busy loop is interrupted and the session keeps its state", async () => {
    await server.exec("kept = 'yes'");
    const answer = await timed("while True: pass");
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
    assert.equal((await server.exec("kept")).result, "yes");
  });

  await t.step("time.sleep past the limit is interrupted", async () => {
    const answer = await timed("import time\ntime.sleep(1000)");
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
  });

  await t.step("a timeoutMs above the policy's maximum is refused and nothing runs", async () => {
    const { status, body } = await server.post("/", {
      code: "while True: pass",
      timeoutMs: 600_000,
    });
    assert.equal(status, 400);
    assert.equal(body.error.name, "BadRequest");
    assert.match(body.error.message, /\(limits\.maxTimeoutMs: 3000\)/);
    // The maximum itself is held.
    const answer = await timed("while True: pass", { timeoutMs: 3000 });
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
  });

  await t.step(
    "swallowing KeyboardInterrupt in a loop costs the interpreter, not the server",
    async () => {
      const answer = await timed(
        "while True:\n    try:\n        while True: pass\n    except KeyboardInterrupt:\n        pass",
      );
      assert.equal(answer.error.pythonExceptionType, "TimeoutError");
      assert.equal(answer.resources.limit, "timeout");
      await assertHealthy(server);
    },
  );

  await t.step("ignoring SIGINT with signal.signal does not escape the time limit", async () => {
    const answer = await timed(
      "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
    );
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
    await assertHealthy(server);
  });

  await t.step("a finally block that loops forever does not escape the time limit", async () => {
    const answer = await timed("try:\n    while True: pass\nfinally:\n    while True: pass");
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
  });

  await t.step("a top-level await that never ends does not escape the time limit", async () => {
    const answer = await timed("import asyncio\nawait asyncio.sleep(10_000)");
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
    await assertHealthy(server);
  });

  await t.step("a sys.settrace hook that swallows the interrupt is refused", async () => {
    await expectRefused(server, "import sys\nsys.settrace(lambda *a: None)", /PermissionError/);
  });

  // Memory
  await t.step("bytearray of 2 GiB − 1 gives MemoryError and the session survives", async () => {
    await server.exec("survivor = 1");
    await expectRefused(server, "bytearray(2**31 - 1)", /MemoryError/);
    assert.equal((await server.exec("survivor")).result, 1);
  });

  await t.step("bytearray(4 GiB) is refused (wasm32 cannot even index it)", async () => {
    const answer = await expectRefused(
      server,
      "bytearray(4 * 1024**3)",
      /MemoryError|OverflowError/,
    );
    assert.ok(answer.error);
  });

  await t.step("allocating just above the policy's memory gives MemoryError", async () => {
    await expectRefused(server, "b = bytearray(300 * 1024 * 1024)", /MemoryError/);
  });

  await t.step("a list grown until memory runs out gives MemoryError, not a crash", async () => {
    const answer = await timed("x = []\nwhile True:\n    x.append(bytearray(10**6))");
    assert.ok(["MemoryError", "TimeoutError"].includes(answer.error.pythonExceptionType));
    await assertHealthy(server);
    // Stopped by the time limit (a slow machine), `x` still holds up to the cap: the steps after
    // this one need the session's memory back, or their 10 MB strings raise MemoryError.
    assert.equal((await server.exec("x = None\nimport gc\ngc.collect()\n'freed'")).result, "freed");
  });

  await t.step("the reported memory never exceeds the policy's cap", async () => {
    const answer = await server.exec("len(bytearray(100 * 1024 * 1024))");
    assert.ok(answer.resources.memoryBytes <= 256 * 1024 * 1024, `${answer.resources.memoryBytes}`);
  });

  // Stack
  await t.step("unbounded recursion gives RecursionError", async () => {
    await expectRefused(server, "def f(): return f()\nf()", /RecursionError/);
  });

  await t.step(
    "raising the recursion limit and recursing does not take the server down",
    async () => {
      const answer = await timed(
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n): return f(n + 1)\nf(0)",
      );
      assert.notEqual(answer.error, null);
      await assertHealthy(server);
    },
  );

  await t.step("a deeply nested expression is refused by the parser, not by a crash", async () => {
    const answer = await timed(`${"(".repeat(100_000)}1${")".repeat(100_000)}`);
    assert.notEqual(answer.error, null);
    await assertHealthy(server);
  });

  // Output
  await t.step("a flood of stdout is cut at the policy's cap and marked", async () => {
    const answer = await timed("print('x' * 10_000_000)");
    assert.ok(answer.stdout.length < 70_000);
    assert.equal(answer.resources.cut.stdout, true);
    assert.equal(answer.resources.limit, "stdout");
  });

  await t.step("a flood of stderr is cut at the policy's cap", async () => {
    const answer = await timed("import sys\nsys.stderr.write('e' * 10_000_000)");
    assert.ok(answer.stderr.length < 70_000);
    assert.equal(answer.resources.cut.stderr, true);
  });

  await t.step("a huge result is cut at the policy's cap", async () => {
    const answer = await timed("'r' * 10_000_000");
    assert.ok(JSON.stringify(answer.result).length < 70_000);
    assert.equal(answer.resources.cut.result, true);
  });

  await t.step("printing until the time limit still gives a bounded answer", async () => {
    const answer = await timed("while True: print('spam' * 100)");
    assert.equal(answer.error.pythonExceptionType, "TimeoutError");
    assert.ok(answer.stdout.length < 70_000);
  });

  await t.step("every limit hit is in the audit log as a security event", () => {
    assert.match(server.stdout, /"event":"security","kind":"limit".*"limit":"timeout"/);
    assert.match(server.stdout, /"event":"security","kind":"worker-killed"/);
  });

  // Sessions
  await t.step("creating sessions past the policy's count gets 429", async () => {
    const ids: string[] = [];
    let refused = 0;
    for (let i = 0; i < 6; i++) {
      const { status, body } = await server.post("/v1/sessions", { mode: "ephemeral" });
      if (status === 201) ids.push(body.id);
      else if (status === 429) refused++;
      else assert.fail(`unexpected status ${status}`);
    }
    assert.ok(refused >= 2, `refused ${refused}`);
    for (const id of ids) {
      await (await server.request(`/v1/sessions/${id}`, { method: "DELETE" })).body?.cancel();
    }
  });

  await t.step("queueing calls past the policy's queue gets 429, not a pile-up", async () => {
    const calls = Array.from(
      { length: 4 },
      () => server.post("/", { code: "import time\ntime.sleep(0.3)" }),
    );
    const statuses = (await Promise.all(calls)).map((r) => r.status);
    assert.ok(statuses.includes(429), JSON.stringify(statuses));
    assert.ok(statuses.every((s) => s === 200 || s === 429), JSON.stringify(statuses));
  });

  // Crossing sessions
  await t.step("one session's variables, files, modules and builtins stay its own", async () => {
    const a = await server.createSession();
    const b = await server.createSession();
    await server.exec(
      "secret = 'a-only'\nopen('/tmp/a.txt', 'w').write('a')\nimport json\njson.loads = lambda *a, **k: 'hijacked'\nimport builtins\nbuiltins.len = lambda x: -1",
      { session: a },
    );
    const seen = await server.exec(
      "import os, json\n[('secret' in globals()), os.path.exists('/tmp/a.txt'), json.loads('1'), len('ab')]",
      { session: b },
    );
    assert.deepEqual(seen.result, [false, false, 1, 2]);
    for (const id of [a, b]) {
      await (await server.request(`/v1/sessions/${id}`, { method: "DELETE" })).body?.cancel();
    }
  });

  await t.step(
    "patching json.dumps cannot inject fields into the answer or cause a 5xx",
    async () => {
      const id = await server.createSession();
      for (
        const code of [
          'import json\njson.dumps = lambda *a, **k: \'1,"error":null,"injected":true\'\n5',
          "import json\njson.dumps = lambda *a, **k: 'not json'\nraise ValueError('x')",
        ]
      ) {
        const res = await server.request(`/v1/sessions/${id}`, {
          method: "POST",
          body: JSON.stringify({ code }),
        });
        assert.equal(res.status, 200);
        const body = JSON.parse(await res.text());
        assert.equal(body.injected, undefined);
        // The runner encodes results with an encoder built before any user code ran, so the
        // patch may simply have no effect (the true result); otherwise the answer is an error.
        assert.ok(body.error !== null || body.result === 5, JSON.stringify(body));
      }
      await (await server.request(`/v1/sessions/${id}`, { method: "DELETE" })).body?.cancel();
    },
  );

  await t.step("an ephemeral session keeps nothing from one call to the next", async () => {
    const id = await server.createSession("ephemeral");
    await server.exec("leftover = 1\nopen('/tmp/e.txt', 'w').write('e')", { session: id });
    const seen = await server.exec(
      "import os\n['leftover' in globals(), os.path.exists('/tmp/e.txt')]",
      {
        session: id,
      },
    );
    assert.deepEqual(seen.result, [false, false]);
    await (await server.request(`/v1/sessions/${id}`, { method: "DELETE" })).body?.cancel();
  });

  await t.step("a session id from another session cannot be guessed from the list", async () => {
    const id = await server.createSession();
    assert.match(id, /^[0-9a-f-]{36}$/);
    await (await server.request(`/v1/sessions/${id}`, { method: "DELETE" })).body?.cancel();
  });

  await t.step("after every exhaustion attempt the server is healthy", () => assertHealthy(server));
});
