import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

// The flow smolagents' remote executors run, as PROTOCOL.md §1 describes it.
const TOOL_DEFINITIONS = `
import numbers
class FinalAnswerException(BaseException):
    def __init__(self, value):
        self.value = value

class FinalAnswerTool:
    name = "final_answer"
    def forward(self, answer):
        raise FinalAnswerException("safe:" + __import__("json").dumps(answer))

final_answer = FinalAnswerTool().forward
def add(a, b):
    return a + b
`;

Deno.test("a smolagents agent's whole flow works at /", async (t) => {
  await using server = await startServer();

  await t.step("the health check with the token answers 200", async () => {
    const res = await server.request("/");
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });

  await t.step("tool definitions sent as code are kept for later calls", async () => {
    const answer = await server.exec(TOOL_DEFINITIONS);
    assert.equal(answer.error, null);
    assert.equal((await server.exec("add(2, 3)")).result, 5);
  });

  await t.step("variables sent through locals().update become globals", async () => {
    const code = `import json\nlocals().update(json.loads('{"city": "Paris", "n": 3}'))`;
    assert.equal((await server.exec(code)).error, null);
    assert.equal((await server.exec("city * n")).result, "ParisParisParis");
  });

  await t.step("a final answer raised from a tool comes back exactly", async () => {
    const big = { text: "x".repeat(50_000) + 'é"\\\t', list: [1, 2.5, null, true] };
    const answer = await server.exec(
      `print("thinking")\nfinal_answer(${JSON.stringify(JSON.stringify(big))})`,
    );
    assert.equal(answer.error?.pythonExceptionType, "FinalAnswerException");
    const value = answer.error!.pythonExceptionValue;
    assert.ok(value.startsWith("safe:"));
    assert.deepEqual(JSON.parse(JSON.parse(value.slice(5))), big);
    assert.equal(answer.stdout, "thinking\n");
  });

  await t.step("state persists: variables, imports and functions", async () => {
    await server.exec("import math\ncounter = 1\ndef inc():\n    global counter\n    counter += 1");
    await server.exec("inc()");
    assert.equal((await server.exec("inc(); (counter, math.floor(2.5))")).result[0], 3);
  });
});

Deno.test("results convert to JSON the way PROTOCOL.md says", async (t) => {
  await using server = await startServer();
  const cases: [string, string, unknown][] = [
    ["an int", "40 + 2", 42],
    ["a float", "1.5", 1.5],
    ["a string", "'héllo ✓'", "héllo ✓"],
    ["a bool", "1 < 2", true],
    ["None", "None", null],
    ["a list with a tuple inside", "[1, (2, 'a')]", [1, [2, "a"]]],
    ["a dict with non-string keys", "{1: 'a', 'b': [None]}", { "1": "a", b: [null] }],
    ["a set, as a list", "sorted({3, 1}) and {5}", [5]],
    [
      "an object without JSON form, as its repr",
      "class P:\n  def __repr__(self): return 'P!'\nP()",
      "P!",
    ],
    ["a non-finite float, as its repr", "float('inf')", "inf"],
    ["a statement (no last expression)", "y = 3", null],
  ];
  for (const [what, code, expected] of cases) {
    await t.step(`${what} converts`, async () => {
      assert.deepEqual((await server.exec(code)).result, expected);
    });
  }

  await t.step("big integers keep every digit", async () => {
    const res = await server.request("/", {
      method: "POST",
      body: JSON.stringify({ code: "2**200 + 1" }),
    });
    const text = await res.text();
    assert.match(text, /"result":1606938044258990275541962092341162602522202993782792835301377,/);
  });

  await t.step("an object with _repr_png_ becomes an image", async () => {
    const code = `
import base64
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
class Img:
    def _repr_png_(self):
        return PNG
Img()`;
    const { result } = await server.exec(code);
    assert.equal(result.type, "image");
    assert.equal(atob(result.data).slice(1, 4), "PNG");
  });

  await t.step("the last expression is the result even after statements and awaits", async () => {
    const answer = await server.exec("import asyncio\nawait asyncio.sleep(0.01)\nx = 2\nx * 21");
    assert.equal(answer.result, 42);
  });

  await t.step("top-level locals() is the session's globals", async () => {
    assert.equal((await server.exec("locals() is globals()")).result, true);
  });
});

Deno.test("output is captured per call, also when the code raises", async (t) => {
  await using server = await startServer();

  await t.step("stdout and stderr come back separately", async () => {
    const answer = await server.exec("import sys\nprint('out')\nprint('err', file=sys.stderr)");
    assert.equal(answer.stdout, "out\n");
    assert.equal(answer.stderr, "err\n");
  });

  await t.step("a call does not see the previous call's output", async () => {
    assert.equal((await server.exec("1")).stdout, "");
  });

  await t.step("what was printed before an error reaches the model in error.stack", async () => {
    const answer = await server.exec("print('step 1 done')\n1/0");
    assert.equal(answer.stdout, "step 1 done\n");
    assert.equal(answer.error?.pythonExceptionType, "ZeroDivisionError");
    assert.match(answer.error!.stack!, /Printed before the error:\nstep 1 done/);
  });

  await t.step("unicode survives, including characters split across writes", async () => {
    const answer = await server.exec("import sys\nfor ch in 'żółw 🐢 漢字': sys.stdout.write(ch)");
    assert.equal(answer.stdout, "żółw 🐢 漢字");
  });

  await t.step("a 1 MB stdout arrives whole", async () => {
    const answer = await server.exec("print('a' * 1_000_000)");
    assert.equal(answer.stdout.length, 1_000_001);
  });

  await t.step(
    "replacing sys.stdout in Python does not break capture for later calls",
    async () => {
      await server.exec("import sys, io\nsys.stdout = io.StringIO()");
      await server.exec("import sys\nsys.stdout = sys.__stdout__");
      assert.equal((await server.exec("print('back')")).stdout, "back\n");
    },
  );
});

Deno.test("every Python exception becomes the protocol's error object", async (t) => {
  await using server = await startServer();
  const cases: [string, string, string][] = [
    ["a ValueError", "raise ValueError('bad value')", "ValueError"],
    ["a SyntaxError", "x = (1", "SyntaxError"],
    ["a KeyboardInterrupt raised by the code", "raise KeyboardInterrupt", "KeyboardInterrupt"],
    ["SystemExit", "import sys\nsys.exit(3)", "SystemExit"],
    [
      "a user-defined BaseException subclass",
      "class Stop(BaseException): pass\nraise Stop('now')",
      "Stop",
    ],
    ["a NameError", "undefined_name", "NameError"],
  ];
  for (const [what, code, type] of cases) {
    await t.step(`${what} is reported with its type and traceback`, async () => {
      const { error, result } = await server.exec(code);
      assert.equal(result, null);
      assert.equal(error?.name, "PythonError");
      assert.equal(error?.pythonExceptionType, type);
      assert.match(error!.message, new RegExp(`(^|\\n)${type}(: |$)`));
      assert.doesNotMatch(error!.message, /\/work\/|node_modules|pyodide\.asm|\.ts:|at Object\./);
    });
  }

  await t.step("the traceback shows the user's frames with their source lines", async () => {
    const { error } = await server.exec(
      "def inner():\n    return 1/0\ndef outer():\n    inner()\nouter()",
    );
    assert.match(error!.message, /^Traceback \(most recent call last\):/);
    assert.match(error!.message, /File "<cell \d+>", line 4, in outer\n {4}inner\(\)/);
    assert.match(error!.message, /ZeroDivisionError: division by zero$/);
    assert.doesNotMatch(error!.message, /runner|<moat>|_pyodide/);
  });

  await t.step("an exception value is str() of the exception", async () => {
    const { error } = await server.exec("raise KeyError('k')");
    assert.equal(error?.pythonExceptionValue, "'k'");
  });

  await t.step("the session still works after errors", async () => {
    assert.equal((await server.exec("6 * 7")).result, 42);
  });
});

Deno.test("interpreters booted from one snapshot do not share random state", async () => {
  await using server = await startServer();
  const a = await server.createSession();
  const b = await server.createSession();
  const draw = "import random\nrandom.random()";
  const first = (await server.exec(draw, { session: a })).result;
  const second = (await server.exec(draw, { session: b })).result;
  assert.notEqual(first, second);
});
