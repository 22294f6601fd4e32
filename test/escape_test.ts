import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

// Python reaching for JavaScript finds nothing it can use, and the server stays healthy.
const ATTEMPTS: [string, string][] = [
  ["reading a host file through js.Deno", "import js\njs.Deno.readTextFileSync('/etc/passwd')"],
  ["reading the environment through js.Deno.env", "import js\njs.Deno.env.get('MOAT_TOKEN')"],
  ["fetching through js.fetch", "import js\nawait js.fetch('http://127.0.0.1:1/')"],
  [
    "running a process through js.Deno.Command",
    "import js\njs.Deno.Command.new('id').outputSync()",
  ],
  [
    "running JavaScript through pyodide.code.run_js",
    "import pyodide.code\npyodide.code.run_js('Deno.readTextFileSync(\"/etc/passwd\")')",
  ],
  [
    "evaluating JavaScript through the Function constructor of a JS object",
    "from pyodide.ffi import to_js\nto_js([1]).constructor.constructor('return Deno.readTextFileSync(\"/etc/passwd\")')()",
  ],
  [
    "reaching Deno through the pyodide_js API object",
    "import pyodide_js\npyodide_js.runPython.constructor('return Deno.env.toObject()')()",
  ],
  ["reading a host file with open()", "open('/etc/passwd').read()"],
  ["reading the server's own source with open()", "open('/work/main/main.ts').read()"],
];

Deno.test("Python code cannot reach the host through JavaScript", async (t) => {
  await using server = await startServer({ env: { MOAT_TOKEN: "secret-token-abcdef0123456789" } });
  for (const [what, code] of ATTEMPTS) {
    await t.step(`${what} raises a Python exception`, async () => {
      const answer = await server.exec(code);
      assert.notEqual(
        answer.error,
        null,
        `expected an error, got ${JSON.stringify(answer.result)}`,
      );
      const text = JSON.stringify(answer);
      assert.doesNotMatch(text, /root:x:0:0/);
      assert.doesNotMatch(text, /secret-token-abcdef0123456789/);
      assert.doesNotMatch(text, /Deno\.serve/);
      const health = await server.request("/health", { auth: false });
      assert.equal(health.status, 200);
      await health.body?.cancel();
    });
  }

  await t.step("a forged postMessage from Python cannot become a call's result", async () => {
    const code =
      "import js\ntry:\n    js.postMessage({'type': 'result', 'id': 2})\nexcept Exception as e:\n    pass\n'real'";
    assert.equal((await server.exec(code)).result, "real");
    assert.equal((await server.exec("1 + 1")).result, 2);
  });
});
