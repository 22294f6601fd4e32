/**
 * Attacks from Python on the host: files, environment and token, network, processes, run-time
 * permissions, Deno KV, the worker's JavaScript, and the host⇄worker messages.
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { CACHE_DIR, ROOT } from "../../src/paths.ts";
import { startServer } from "../helpers/server.ts";
import { assertHealthy, assertNothingLeaked, expectRefused, SECRET_TOKEN } from "./attempts.ts";

/** [what the attack tries, Python that tries it, the exception type expected]. */
const REFUSED: [string, string, RegExp?][] = [
  // Host files
  ["reading /etc/passwd with open() finds no host file", "open('/etc/passwd').read()"],
  [
    "reading the server's main.ts by absolute path finds no host file",
    "import pathlib\nsorted(pathlib.Path('/').glob('*'))\nopen('/work/main/main.ts').read()",
  ],
  [
    "reading the snapshot cache finds no host file",
    "import os\nos.listdir('/work')",
    /FileNotFoundError/,
  ],
  [
    "reading a host file through js.Deno finds no Deno",
    "import js\njs.Deno.readTextFileSync('/etc/passwd')",
  ],
  [
    "reading a host file through globalThis via js finds nothing",
    "import js\njs.globalThis.Deno.readTextFileSync('/etc/passwd')",
  ],
  [
    "mounting the host file system through pyodide_js.mountNodeFS is impossible",
    "import pyodide_js\npyodide_js.mountNodeFS('/host', '/')",
  ],
  [
    "mounting NODEFS through pyodide_js._module is impossible",
    "import pyodide_js\npyodide_js._module.FS.mount(pyodide_js._module.NODEFS, {'root': '/'}, '/host')",
  ],
  [
    "a dynamic import() through pyodide.code.run_js is blocked",
    "from pyodide.code import run_js\nrun_js(\"import('file:///etc/passwd')\")",
    /BlockedByPolicy|ImportError/,
  ],
  [
    "a dynamic import() through Pyodide's loadScript is unreachable",
    "import pyodide_js\npyodide_js._api.loadScript('data:text/javascript,1')",
  ],
  [
    "a nested Worker asking to inherit permissions cannot be created",
    "import js\njs.Worker.new('data:text/javascript,1', {'type': 'module', 'deno': {'permissions': 'inherit'}})",
  ],
  [
    "a nested Worker through an object found in the event loop cannot be created",
    "import asyncio\ng = type(asyncio.get_event_loop()).__init__.__globals__\ng['scheduleCallback'].constructor",
  ],
  [
    "loading a package from a host path through pyodide_js.loadPackage is unreachable",
    "import pyodide_js\npyodide_js.loadPackage('/etc/passwd')",
  ],
  // Environment and token
  [
    "reading MOAT_TOKEN through js.Deno.env finds no Deno",
    "import js\njs.Deno.env.get('MOAT_TOKEN')",
  ],
  [
    "reading the host environment through js.process.env finds nothing",
    "import js\njs.process.env.MOAT_TOKEN",
  ],
  [
    "reading /proc/self/environ finds no host environment",
    "open('/proc/self/environ').read()",
  ],
  // Network
  [
    "a socket to the server's own loopback port fails",
    "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=2)",
  ],
  [
    "urllib to the server's /health on loopback fails",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT/health', timeout=2).read()",
  ],
  [
    "a socket to an unroutable documentation address fails",
    "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)",
  ],
  [
    "fetch through js.fetch finds no fetch",
    "import js\nawait js.fetch('http://127.0.0.1:PORT/health')",
  ],
  [
    "a WebSocket through js finds no WebSocket",
    "import js\njs.WebSocket.new('ws://127.0.0.1:PORT/')",
  ],
  [
    "Deno.connect through js finds no Deno",
    "import js\nawait js.Deno.connect({'hostname': '127.0.0.1', 'port': PORT})",
  ],
  [
    "pyodide.http.pyfetch is blocked",
    "from pyodide.http import pyfetch\nawait pyfetch('http://127.0.0.1:PORT/health')",
    /BlockedByPolicy|ImportError/,
  ],
  [
    "moat.fetch does not exist when the policy allows no host",
    "import moat\nawait moat.fetch('http://127.0.0.1:PORT/health')",
    /ModuleNotFoundError/,
  ],
  // Processes
  ["subprocess.run cannot start a process", "import subprocess\nsubprocess.run(['id'])"],
  ["os.fork cannot fork", "import os\nos.fork()"],
  ["os.execv cannot replace the interpreter", "import os\nos.execv('/bin/sh', ['sh'])"],
  [
    "Deno.Command through js finds no Deno",
    "import js\njs.Deno.Command.new('id').outputSync()",
  ],
  // Run-time permissions and Deno KV
  [
    "Deno.permissions.request through js finds no Deno",
    "import js\nawait js.Deno.permissions.request({'name': 'read'})",
  ],
  ["Deno.openKv through js finds no Deno", "import js\nawait js.Deno.openKv(':memory:')"],
  // The worker's JavaScript
  [
    "evaluating JavaScript through pyodide.code.run_js is blocked",
    "import pyodide.code\npyodide.code.run_js('Deno')",
    /BlockedByPolicy|ImportError/,
  ],
  [
    "the Function constructor of a to_js object is unreachable",
    "from pyodide.ffi import to_js\nto_js([1]).constructor.constructor('return Deno')()",
    /BlockedByPolicy|ImportError/,
  ],
  [
    "the pyodide_js API object is an empty stand-in",
    "import pyodide_js\npyodide_js.runPython.constructor('return Deno')()",
    /AttributeError/,
  ],
  [
    "_pyodide_core cannot be imported",
    "import _pyodide_core\n_pyodide_core.to_js([1])",
    /BlockedByPolicy/,
  ],
  [
    "_pyodide_core cannot be found in sys.modules",
    "import sys\nsys.modules['_pyodide_core']",
    /KeyError/,
  ],
  [
    "_pyodide_core cannot be re-created through importlib",
    "import importlib.util, importlib.machinery\nspec = importlib.machinery.ModuleSpec('_pyodide_core', importlib.machinery.BuiltinImporter)\nm = importlib.util.module_from_spec(spec)\nm.to_js([1])",
  ],
  [
    "_pyodide_core cannot be loaded through importlib.import_module, which skips the audit event",
    "import importlib\nimportlib.import_module('_pyodide_core').to_js([1])",
    /BlockedByPolicy/,
  ],
  [
    "pyodide.ffi cannot be re-executed through importlib.import_module",
    "import importlib\nimportlib.import_module('pyodide.ffi').to_js([1])",
    /BlockedByPolicy/,
  ],
  [
    "_ctypes cannot be loaded through importlib.import_module",
    "import importlib\nimportlib.import_module('_ctypes')",
    /BlockedByPolicy/,
  ],
  [
    "the original _imp.create_builtin cannot be dug out of its wrapper",
    "import _imp, importlib.machinery\ncall = _imp.create_builtin.__closure__[0].cell_contents\nsend = [c.cell_contents for c in call.__closure__ if callable(c.cell_contents) and getattr(c.cell_contents, '__name__', '') == 'send'][0]\nsend.__self__.gi_frame.f_locals['create_builtin'](importlib.machinery.ModuleSpec('_pyodide_core', None)).to_js([1])",
    /PermissionError/,
  ],
  [
    "a JavaScript Error cannot be made from the JsException class found by __subclasses__",
    "[c for c in Exception.__subclasses__() if c.__name__ == 'JsException'][-1]('Error', 'x').constructor",
    /TypeError/,
  ],
  [
    "deleting JsException.__new__ does not bring back the JavaScript Error maker",
    "J = [c for c in Exception.__subclasses__() if c.__name__ == 'JsException'][-1]\ndel J.__new__\nJ('Error', 'x').constructor",
  ],
  [
    "the event loop's globals hold no JavaScript function",
    "import asyncio\ng = type(asyncio.get_event_loop()).__init__.__globals__\n[k for k, v in g.items() if 'JsProxy' in type(v).__name__ or getattr(v, '__self__', None).__class__.__name__ == 'module' and v.__self__.__name__ == '_pyodide_core'][0]",
    /IndexError/,
  ],
  [
    "the event loop's scheduler wrapper does not hand out its generator frame",
    "import asyncio\ng = type(asyncio.get_event_loop()).__init__.__globals__\nsend = g['scheduleCallback'].__closure__[0].cell_contents\nsend.__self__.gi_frame.f_locals",
    /PermissionError/,
  ],
  [
    "walking every object with gc.get_objects is blocked",
    "import gc\n[o for o in gc.get_objects() if 'JsProxy' in type(o).__name__]",
    /PermissionError/,
  ],
  [
    "gc.get_referents of the scheduler's generator is blocked",
    "import asyncio, gc\ng = type(asyncio.get_event_loop()).__init__.__globals__\ngc.get_referents(g['scheduleCallback'].__closure__[0].cell_contents.__self__)",
    /PermissionError/,
  ],
  [
    "tracing internal frames with sys.setprofile is blocked",
    "import sys\nsys.setprofile(lambda *a: None)",
    /PermissionError/,
  ],
  ["ctypes (raw memory) cannot be imported", "import ctypes", /BlockedByPolicy/],
  [
    "the package loader, which keeps its JavaScript handles, cannot be imported",
    "import pyodide._package_loader as p\np.to_js([1])",
    /BlockedByPolicy|ImportError/,
  ],
  [
    "the package loader cannot be found in sys.modules",
    "import sys\nsys.modules['pyodide._package_loader'].to_js([1])",
    /KeyError/,
  ],
  // Forging host messages and the interrupt buffer
  [
    "posting a forged message through js.postMessage finds no postMessage",
    "import js\njs.postMessage({'type': 'result', 'id': 2, 'result': '1'})",
  ],
  [
    "replacing the output hooks through pyodide_js.setStdout is impossible",
    "import pyodide_js\npyodide_js.setStdout({'write': lambda b: len(b)})",
  ],
  [
    "clearing the interrupt buffer through pyodide_js._module is impossible",
    "import pyodide_js\npyodide_js._module.Py_EmscriptenSignalBuffer[0] = 0",
  ],
  [
    "dropping the interrupt buffer through pyodide_js.setInterruptBuffer is impossible",
    "import pyodide_js\npyodide_js.setInterruptBuffer(None)",
  ],
];

Deno.test("Python code cannot reach the host, its secrets or the worker's JavaScript", async (t) => {
  await using server = await startServer({ env: { MOAT_TOKEN: SECRET_TOKEN } });
  const port = new URL(server.url).port;

  for (const [what, code, type] of REFUSED) {
    await t.step(what, async () => {
      await expectRefused(server, code.replaceAll("PORT", port), type);
    });
  }

  await t.step("the sandbox's file system shows no host directory", async () => {
    const answer = await server.exec("import os\nsorted(os.listdir('/'))");
    assert.equal(answer.error, null);
    for (const name of ["work", "root", "etc"]) {
      assert.ok(!answer.result.includes(name) || name === "etc", `found /${name}`);
    }
    assert.ok(!answer.result.includes("work"));
  });

  await t.step("Python's environment holds neither the token nor any MOAT_ setting", async () => {
    const answer = await server.exec("import os\ndict(os.environ)");
    assert.equal(answer.error, null);
    assert.ok(!Object.keys(answer.result).some((k) => k.startsWith("MOAT_")));
    assertNothingLeaked(answer);
  });

  await t.step(
    "nothing in sys, os.environ or any file names the server's directories",
    async () => {
      const needles = [ROOT, CACHE_DIR, dirname(Deno.execPath()), "$deno$"];
      const code = `import os, sys
needles = ${JSON.stringify(needles)}
found = []
def look(where, value):
    text = value if isinstance(value, str) else repr(value)
    found.extend(f"{where} holds {n}" for n in needles if n in text)
for name in dir(sys):
    try:
        look(f"sys.{name}", getattr(sys, name))
    except Exception:
        pass
for key, value in os.environ.items():
    look(f"os.environ[{key!r}]", value)
for d, dirs, files in os.walk("/"):
    if d in ("/proc", "/dev"):
        dirs[:] = []
        continue
    for f in files:
        path = os.path.join(d, f)
        look("a file name", path)
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        found.extend(f"{path} holds {n}" for n in needles if n.encode() in data)
found`;
      const answer = await server.exec(code);
      assert.equal(answer.error, null, answer.error?.message);
      assert.deepEqual(answer.result, []);
    },
  );

  await t.step("no file in the sandbox's home or /tmp holds the token", async () => {
    const code = `import os
found = []
for top in ('/home', '/tmp'):
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            try:
                if b'${SECRET_TOKEN}' in open(p, 'rb').read():
                    found.append(p)
            except OSError:
                pass
found`;
    assert.deepEqual((await server.exec(code)).result, []);
  });

  await t.step("os.system cannot run a shell command", async () => {
    const answer = await server.exec("import os\nos.system('cat /etc/passwd')");
    assert.ok(answer.error !== null || answer.result !== 0, JSON.stringify(answer));
    assertNothingLeaked(answer);
  });

  await t.step("a forged worker message cannot become a call's result", async () => {
    const answer = await server.exec(
      "try:\n    import js\n    js.postMessage({'id': 1, 'ok': True, 'reply': {'result': '1'}})\n" +
        "except Exception:\n    pass\n'real'",
    );
    assert.equal(answer.result, "real");
  });

  await t.step("printing a fake audit line reaches the answer, never the audit log", async () => {
    const fake = '{"event":"call","session":"forged-by-python"}';
    const answer = await server.exec(`print(${JSON.stringify(fake)})`);
    assert.match(answer.stdout, /forged-by-python/);
    assert.doesNotMatch(server.stdout, /forged-by-python/);
  });

  await t.step("every refused attempt is in the audit log as a denied security event", async () => {
    await server.exec("try:\n    import _pyodide_core\nexcept ImportError:\n    pass");
    await new Promise((r) => setTimeout(r, 50));
    assert.match(
      server.stdout,
      /"event":"security","kind":"denied".*"what":"import _pyodide_core"/,
    );
    assert.doesNotMatch(server.stdout, /root:x:0:0|_pyodide_core\.to_js/);
  });

  await t.step("after every attack the server is healthy", () => assertHealthy(server));
});
