import assert from "node:assert/strict";
import { type ExecAnswer, startServer, type TestServer } from "./helpers/server.ts";

/** smolagents' BASE_BUILTIN_MODULES, allowed whenever a rule is on. */
const BASE = [
  "collections",
  "datetime",
  "itertools",
  "math",
  "queue",
  "random",
  "re",
  "stat",
  "statistics",
  "time",
  "unicodedata",
];

/** smolagents' local executor's wording, with the list it shows. */
function refusal(verb: "Import of" | "Import from", name: string, extra: string[] = []): string {
  const shown = [...new Set([...BASE, ...extra])].sort().map((n) => `'${n}'`).join(", ");
  return `${verb} ${name} is not allowed. Authorized imports are: [${shown}]`;
}

async function run(
  server: TestServer,
  code: string,
  authorizedImports?: string[],
  session?: string,
): Promise<ExecAnswer> {
  const { status, body } = await server.post(session ? `/v1/sessions/${session}` : "/", {
    code,
    ...(authorizedImports ? { authorizedImports } : {}),
  });
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

Deno.test("authorized imports", async (t) => {
  await using server = await startServer();

  await t.step("without authorizedImports every import works as before", async () => {
    assert.equal((await run(server, "import os, json\nos.sep")).result, "/");
  });

  await t.step("an unlisted import raises ImportError in smolagents' words", async () => {
    const answer = await run(server, "import json", ["numpy"]);
    assert.equal(answer.error?.pythonExceptionType, "ImportError");
    assert.equal(answer.error?.pythonExceptionValue, refusal("Import of", "json", ["numpy"]));
    assert.match(answer.error!.message, /import json/, "the traceback shows the line");
  });

  await t.step("a from-import is refused as 'Import from'", async () => {
    const answer = await run(server, "from os import path", []);
    assert.equal(answer.error?.pythonExceptionValue, refusal("Import from", "os"));
  });

  await t.step("smolagents' standard modules and the listed ones import", async () => {
    const code =
      "import math, random, collections, json\nfrom datetime import date\nmath.floor(2.5)";
    assert.equal((await run(server, code, ["json"])).result, 2);
  });

  await t.step(
    "'pkg.*' allows the package and its submodules; 'pkg' the package only",
    async () => {
      assert.equal((await run(server, "import json.decoder\n1", ["json.*"])).result, 1);
      const only = await run(server, "import json\nimport json.decoder", ["json"]);
      assert.equal(
        only.error?.pythonExceptionValue,
        refusal("Import of", "json.decoder", ["json"]),
      );
    },
  );

  await t.step("'*' enforces nothing", async () => {
    assert.equal((await run(server, "import os\nos.sep", ["*"])).result, "/");
  });

  await t.step("a library imports what it needs even when the code may not", async () => {
    // statistics imports fractions, decimal, bisect… none of them listed.
    const code = "import statistics\nstatistics.median([3, 1, 2])";
    assert.equal((await run(server, code, [])).result, 2);
  });

  await t.step("a try/except ImportError fallback works as with a missing module", async () => {
    const code = "try:\n    import json\nexcept ImportError:\n    json = None\njson is None";
    assert.equal((await run(server, code, [])).result, true);
  });

  await t.step("the rule applies to the call that carries it only", async () => {
    assert.notEqual((await run(server, "import json", [])).error, null);
    assert.equal((await run(server, "import json\n1")).result, 1);
  });
});

Deno.test("a session created with authorizedImports enforces them on every call", async () => {
  await using server = await startServer();
  const created = await server.post("/v1/sessions", { authorizedImports: ["json"] });
  assert.equal(created.status, 201);
  assert.deepEqual(created.body.authorizedImports, ["json"]);
  const id = created.body.id;
  assert.equal((await run(server, "import json\njson.dumps([1])", undefined, id)).result, "[1]");
  const refused = await run(server, "import os", undefined, id);
  assert.equal(refused.error?.pythonExceptionValue, refusal("Import of", "os", ["json"]));
  // A call may override the session's rule; '*' lifts it for that call.
  assert.equal((await run(server, "import os\nos.sep", ["*"], id)).result, "/");
  assert.notEqual((await run(server, "import os", undefined, id)).error, null);
  const details = await server.request(`/v1/sessions/${id}`);
  assert.deepEqual((await details.json()).authorizedImports, ["json"]);
});

Deno.test("functions defined by a call without a rule (an agent's tools) import freely later", async () => {
  await using server = await startServer();
  const id = (await server.post("/v1/sessions", { authorizedImports: [] })).body.id;
  const tool = "def to_json(value):\n    import json\n    return json.dumps(value)";
  assert.equal((await run(server, tool, ["*"], id)).error, null);
  assert.equal((await run(server, "to_json({'a': 1})", undefined, id)).result, '{"a": 1}');
  // The same function written by the checked code is checked.
  const own = "def mine(value):\n    import json\n    return json.dumps(value)\nmine(1)";
  assert.equal(
    (await run(server, own, undefined, id)).error?.pythonExceptionValue,
    refusal("Import of", "json"),
  );
});

Deno.test("a malformed authorizedImports is a 400 that names the field", async () => {
  await using server = await startServer();
  const bad = await server.post("/", { code: "1", authorizedImports: "numpy" });
  assert.equal(bad.status, 400);
  assert.match(bad.body.error.message, /^Field 'authorizedImports'/);
  const name = await server.post("/v1/sessions", { authorizedImports: ["os path"] });
  assert.equal(name.status, 400);
  assert.match(name.body.error.message, /^Field 'authorizedImports\.0': must be a list of module/);
});

Deno.test("Moat's own code is never subject to the session's rule", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-imports-" });
  const env = { MOAT_TOKEN: "authorized-imports-token-0123", MOAT_STORE: `kv:${dir}/store.kv` };
  let id: string;
  {
    await using server = await startServer({ env });
    id = (await server.post("/v1/sessions", { authorizedImports: ["math"] })).body.id;
    await t.step("top-level await runs under the rule, and the state stays", async () => {
      assert.equal((await run(server, "x = 41", undefined, id)).error, null);
      const awaited = await run(
        server,
        "async def f():\n    return x + 1\nawait f()",
        undefined,
        id,
      );
      assert.equal(awaited.error, null, awaited.error?.message);
      assert.equal(awaited.result, 42);
      assert.equal((await run(server, "x", undefined, id)).result, 41);
    });
    await t.step("a checkpoint of a session with the rule is taken", async () => {
      const saved = await server.exec("y = x + 1", { session: id, sync: true });
      assert.equal(saved.error, null, saved.error?.message);
      assert.notEqual(saved.checkpoint?.ok, false, JSON.stringify(saved.checkpoint));
    });
    server.kill("SIGKILL");
    await server.exited();
  }
  await t.step("after kill -9 the session comes back with its state and its rule", async () => {
    await using again = await startServer({ env });
    const answer = await run(again, "(x, y)", undefined, id);
    assert.equal(answer.error, null, answer.error?.message);
    assert.deepEqual(answer.result, [41, 42]);
    assert.equal(answer.restored, true);
    const refused = await run(again, "import os", undefined, id);
    assert.equal(refused.error?.pythonExceptionValue, refusal("Import of", "os", ["math"]));
  });
  await Deno.remove(dir, { recursive: true });
});
