import assert from "node:assert/strict";
import { startServer } from "../helpers/server.ts";
import { assertHealthy, assertNothingLeaked } from "./attempts.ts";

// Each attempt tries to import `json` (or `os`) while the call's rule does not list it; some
// rules list importlib or sys, so the attempt has the machinery at hand. Every one must end in
// the ImportError (or the PermissionError of the guard), and the import must not happen.
const ATTEMPTS: [string, string[], string][] = [
  ["__import__ called directly", [], "__import__('json')"],
  ["__import__ taken from the builtins module object", [], "__builtins__.__import__('json')"],
  ["an import in code exec'd with fresh globals", [], "exec('import json', {})"],
  [
    "an import in code exec'd with its own builtins dict",
    [],
    "exec('import json', {'__builtins__': {'__import__': __import__}})",
  ],
  ["an import inside a function the code defines", [], "def f():\n    import json\nf()"],
  [
    "an import inside a tool class the code defines",
    [],
    "class Tool:\n    def forward(self):\n        import json\n        return json\nTool().forward()",
  ],
  ["an import inside a lambda", [], "(lambda: __import__('json'))()"],
  ["importlib.import_module", ["importlib"], "import importlib\nimportlib.import_module('json')"],
  ["importlib.__import__", ["importlib"], "import importlib\nimportlib.__import__('json')"],
  [
    "importlib._bootstrap._gcd_import",
    ["importlib.*"],
    "import importlib._bootstrap as b\nb._gcd_import('json')",
  ],
  [
    "importlib.util.find_spec and module_from_spec",
    ["importlib.*"],
    "import importlib.util as u\nu.module_from_spec(u.find_spec('json'))",
  ],
  [
    "a loader's load_module",
    ["importlib.*"],
    "import importlib.util as u\nu.find_spec('json').loader.load_module('json')",
  ],
  [
    "a loader's exec_module",
    ["importlib.*", "sys"],
    "import importlib.util as u, sys\nm = type(sys)('json')\nu.find_spec('json').loader.exec_module(m)",
  ],
  [
    "_imp.create_builtin through sys.modules",
    ["sys"],
    "import sys\nsys.modules['_imp'].create_builtin(type('S', (), {'name': '_json', 'origin': None})())",
  ],
  ["importing _imp", [], "import _imp"],
  ["importing builtins to swap __import__", [], "import builtins"],
  [
    "re-importing importlib after removing it from sys.modules",
    ["importlib", "sys"],
    "import sys\ndel sys.modules['importlib']\nimport importlib\nimportlib.import_module('json')",
  ],
  [
    "planting the module in sys.modules first",
    ["sys"],
    "import sys\nsys.modules['os'] = sys\nimport os",
  ],
  [
    "rebinding sys.modules to a dict that lists the module",
    ["sys"],
    "import sys\nsys.modules = {}\nimport json",
  ],
  [
    "a relative import from a forged __package__",
    [],
    "globals()['__package__'] = 'json'\nfrom . import decoder",
  ],
  [
    "the import system's functions reached by introspection",
    [],
    "import math\nmath.__loader__.find_spec.__func__.__globals__['_gcd_import']('json')",
  ],
  [
    "a built-in module's loader's load_module",
    ["math"],
    "import math\nmath.__loader__.load_module('posix')",
  ],
  [
    "a built-in module's loader through its spec",
    [],
    "import math\nmath.__spec__.loader.load_module('posix')",
  ],
  [
    "a frozen module's loader's load_module",
    [],
    "import _weakrefset\nimport math\ntype(math.__loader__).load_module('_signal')",
  ],
  [
    "a built-in loader's create_module with a forged spec",
    [],
    "import math\nmath.__loader__.create_module(type('S', (), {'name': 'posix'})())",
  ],
  [
    "a built-in loader's exec_module on a module object",
    [],
    "import math\nm = type(math)('posix')\nmath.__loader__.exec_module(m)\nm.listdir",
  ],
  ["reading the original __import__ from the guard's code", [], "__import__.__code__.co_consts"],
  ["reading the guard's closure", [], "__import__.__closure__[0].cell_contents"],
];

Deno.test("authorized imports cannot be bypassed", async (t) => {
  await using server = await startServer();
  for (const [what, authorizedImports, code] of ATTEMPTS) {
    await t.step(`${what} is refused`, async () => {
      // A session of its own: an earlier attempt's leftovers (a rebound sys.modules) must not
      // change how this one goes.
      const { id } = (await server.post("/v1/sessions", {})).body;
      const { status, body } = await server.post(`/v1/sessions/${id}`, { code, authorizedImports });
      await server.request(`/v1/sessions/${id}`, { method: "DELETE" });
      assert.equal(status, 200);
      assert.notEqual(body.error, null, `expected a refusal, got ${JSON.stringify(body.result)}`);
      assert.match(
        body.error.pythonExceptionType,
        /^(ImportError|PermissionError|TypeError)$/,
        body.error.message,
      );
      assertNothingLeaked(body);
    });
  }
  await t.step("after every attempt the rule still holds and the server is healthy", async () => {
    const { body } = await server.post("/", { code: "import json", authorizedImports: [] });
    assert.match(body.error.pythonExceptionValue, /^Import of json is not allowed/);
    await assertHealthy(server);
  });
});
