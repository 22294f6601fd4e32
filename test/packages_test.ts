/**
 * Python packages, end to end: a real server, real Pyodide, wheels the tests build themselves,
 * served from a directory or a loopback HTTP server. Nothing here reaches the internet: the
 * server under test may only reach loopback (test/helpers/server.ts).
 */
import assert from "node:assert/strict";
import { STDLIB_MODULES } from "../src/packages/stdlib.ts";
import { startServer, type TestServer } from "./helpers/server.ts";
import {
  DirectoryServer,
  fastmodSpec,
  type WheelSpec,
  writeLockIndex,
  writeSimpleIndex,
} from "./helpers/wheels.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** A package and the one it depends on, listed in a Pyodide-style lock file. */
const STANDIN_DEP: WheelSpec = {
  name: "stand-in-dep",
  files: { "standin_dep/__init__.py": "VALUE = 41\n" },
};
const STANDIN_TOP: WheelSpec = {
  name: "stand-in-top",
  version: "2.0",
  files: {
    "standin_top/__init__.py":
      "from standin_dep import VALUE\ndef answer():\n    return VALUE + 1\n",
  },
  requires: ["stand-in-dep"],
};
/** Stand-ins for numpy and pillow: the real wheels only come from the network. */
const STANDIN_NUMPY: WheelSpec = {
  name: "numpy",
  version: "0.0.1",
  files: { "numpy/__init__.py": "STANDIN = 'numpy stand-in'\n" },
};
const STANDIN_PILLOW: WheelSpec = {
  name: "Pillow",
  version: "0.0.1",
  files: { "PIL/__init__.py": "STANDIN = 'pillow stand-in'\n" },
  imports: ["PIL"],
};

function policy(packages: Record<string, unknown>): string {
  return `limits:\n  poolSize: 1\npackages: ${JSON.stringify(packages)}\n`;
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "moat-packages-" });
}

function wheelRequests(source: DirectoryServer): string[] {
  return source.requests.filter((p) => p.endsWith(".whl"));
}

Deno.test("packages from a lock-file index load by import name, with dependencies, once", async (t) => {
  const dir = await tempDir();
  try {
    // Fresh bytes each run, so the server's disk cache (kept across runs) cannot serve them.
    const nonce = (spec: WheelSpec) => ({
      ...spec,
      files: { ...spec.files, [`${spec.name.replaceAll("-", "_")}/_run.py`]: crypto.randomUUID() },
    });
    await writeLockIndex(dir, [nonce(STANDIN_DEP), nonce(STANDIN_TOP), await fastmodSpec()]);
    await using source = new DirectoryServer(dir);
    await using server = await startServer({ policyText: policy({ index: source.url }) });

    await t.step("an import name loads its package, and the dependency comes along", async () => {
      const answer = await server.exec("import standin_top\nstandin_top.answer()", {
        packages: ["standin_top"],
      });
      assert.equal(answer.error, null);
      assert.equal(answer.result, 42);
      assert.deepEqual(answer.packages.loaded, [
        { name: "stand-in-dep", version: "1.0" },
        { name: "stand-in-top", version: "2.0" },
      ]);
      assert.deepEqual(answer.packages.failed, []);
    });

    await t.step("a second call listing it again loads nothing", async () => {
      const answer = await server.exec("import standin_top\nstandin_top.answer()", {
        packages: ["standin_top", "stand-in-top", "stand_in_dep"],
      });
      assert.equal(answer.result, 42);
      assert.deepEqual(answer.packages.loaded, []);
      assert.ok(answer.packages.skipped.every(
        (s: { reason: string }) => s.reason === "already loaded in this session",
      ));
      assert.equal(wheelRequests(source).length, 2, "each wheel is fetched once");
    });

    await t.step("standard-library names, wildcards and repeats are skipped", async () => {
      const answer = await server.exec("import json, math\nmath.pi > 3", {
        packages: ["math", "json", "os.path", "numpy.*", "*", "math", "collections"],
      });
      assert.equal(answer.result, true);
      assert.deepEqual(answer.packages.loaded, []);
      assert.deepEqual(answer.packages.failed, []);
      const reasons = Object.fromEntries(
        answer.packages.skipped.map((s: { name: string; reason: string }) => [s.name, s.reason]),
      );
      assert.deepEqual(Object.keys(reasons).sort(), [
        "*",
        "collections",
        "json",
        "math",
        "numpy.*",
        "os.path",
      ]);
      assert.match(reasons["math"], /standard library/);
      assert.match(reasons["numpy.*"], /wildcard/);
    });

    await t.step("the standard-library list matches the interpreter's", async () => {
      const answer = await server.exec(
        "import sys\nsorted(set(sys.stdlib_module_names) | set(sys.builtin_module_names))",
      );
      const missing = (answer.result as string[]).filter((name) => !STDLIB_MODULES.has(name));
      assert.deepEqual(missing, []);
    });

    await t.step("a wheel with a compiled extension module installs from bytes", async () => {
      const answer = await server.exec("import fastmod\nfastmod.answer()", {
        packages: ["fastmod"],
      });
      assert.equal(answer.error, null);
      assert.equal(answer.result, 42);
    });

    await t.step("a new session loads its own copy; the server fetches nothing again", async () => {
      const session = await server.createSession();
      const answer = await server.exec("import standin_top\nstandin_top.answer()", {
        session,
        packages: ["standin_top"],
      });
      assert.equal(answer.result, 42);
      assert.equal(answer.packages.loaded.length, 2);
      const fetched = wheelRequests(source).filter((p) => p.includes("stand_in"));
      assert.equal(fetched.length, 2, "the wheels were not fetched again");
    });

    await t.step("a restarted server takes the wheels from its disk cache", async () => {
      await using again = await startServer({ policyText: policy({ index: source.url }) });
      const answer = await again.exec("import standin_top\nstandin_top.answer()", {
        packages: ["standin_top"],
      });
      assert.equal(answer.result, 42);
      const fetched = wheelRequests(source).filter((p) => p.includes("stand_in"));
      assert.equal(fetched.length, 2, "nothing was downloaded again");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("packages the policy or the index cannot give are reported, never silent", async (t) => {
  const dir = await tempDir();
  try {
    await writeLockIndex(dir, [STANDIN_DEP, STANDIN_TOP, STANDIN_PILLOW, {
      name: "gone",
      files: { "gone/__init__.py": "" },
    }]);
    await Deno.remove(`${dir}/gone-1.0-py3-none-any.whl`);
    await using source = new DirectoryServer(dir);
    await using server = await startServer({
      policyText: policy({ index: source.url, deny: ["PIL"] }),
    });

    await t.step("a denied package is refused, and importing it says why", async () => {
      const answer = await server.exec("import PIL", { packages: ["PIL"] });
      assert.deepEqual(answer.packages.loaded, []);
      assert.equal(answer.packages.failed[0].name, "PIL");
      assert.match(answer.packages.failed[0].reason, /refused by the policy.*packages\.deny/);
      assert.match(answer.stderr, /moat: package 'PIL' was not loaded: refused by the policy/);
      assert.equal(answer.error?.pythonExceptionType, "ModuleNotFoundError");
      assert.match(answer.error!.message, /No module named 'PIL': .*packages\.deny/);
    });

    await t.step("a missing package is reported with the reason", async () => {
      const answer = await server.exec("import nosuchthing", { packages: ["nosuchthing"] });
      assert.match(answer.packages.failed[0].reason, /no package named 'nosuchthing'/);
      assert.match(answer.error!.message, /No module named 'nosuchthing': .*no package named/);
      const gone = await server.exec("1", { packages: ["gone"] });
      assert.equal(gone.result, 1, "the code still runs");
      assert.match(gone.packages.failed[0].reason, /could not be downloaded: .*HTTP 404/);
    });

    await t.step("URLs, paths and version specifiers are refused without a download", async () => {
      const before = source.requests.length;
      const entries = [
        "https://example.com/evil-1.0-py3-none-any.whl",
        "file:///etc/passwd",
        "../standin_top",
        "/tmp/x.whl",
        "standin_top-1.0-py3-none-any.whl",
        "stand-in-top==2.0",
        "stand-in-top @ https://example.com/x.whl",
      ];
      const answer = await server.exec("1", { packages: entries });
      assert.equal(answer.result, 1);
      assert.deepEqual(answer.packages.failed.map((f: { name: string }) => f.name), entries);
      for (const f of answer.packages.failed) assert.match(f.reason, /^refused: /);
      assert.equal(source.requests.length, before, "nothing was fetched");
    });

    await t.step("the server keeps working afterwards", async () => {
      const answer = await server.exec("import standin_top\nstandin_top.answer()", {
        packages: ["standin_top", "PIL"],
      });
      assert.equal(answer.result, 42);
      assert.equal(answer.packages.failed.length, 1, JSON.stringify(answer.packages));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a dependency the policy does not allow refuses the package that needs it", async () => {
  const dir = await tempDir();
  try {
    await writeLockIndex(dir, [STANDIN_DEP, STANDIN_TOP]);
    await using server = await startServer({
      policyText: policy({ index: dir, allow: ["stand-in-top"] }),
      readPaths: [dir],
    });
    const answer = await server.exec("import standin_top", { packages: ["standin_top"] });
    assert.match(
      answer.packages.failed[0].reason,
      /'stand-in-top' needs 'stand-in-dep', which is refused by the policy: .* not in packages\.allow/,
    );
    assert.equal(answer.error?.pythonExceptionType, "ModuleNotFoundError");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pure-Python packages Pyodide does not ship come from the policy's simple index", async () => {
  const dir = await tempDir();
  try {
    await writeLockIndex(`${dir}/lock`, [STANDIN_DEP]);
    await writeSimpleIndex(`${dir}/simple`, [
      {
        name: "pure-top",
        files: {
          "pure_top/__init__.py":
            "import pure_dep, standin_dep\nX = pure_dep.V + standin_dep.VALUE\n",
        },
        requires: [
          "pure-dep>=1.0",
          "stand-in-dep",
          'windows-only; sys_platform == "win32"',
          'testing-tool; extra == "test"',
        ],
      },
      { name: "pure-dep", version: "0.9", files: { "pure_dep/__init__.py": "V = -100\n" } },
      { name: "pure-dep", version: "1.2", files: { "pure_dep/__init__.py": "V = 1\n" } },
    ]);
    await using source = new DirectoryServer(dir);
    await using server = await startServer({
      policyText: policy({ index: `${source.url}lock/`, pypi: `${source.url}simple/` }),
    });
    const answer = await server.exec("import pure_top\npure_top.X", { packages: ["pure-top"] });
    assert.equal(answer.error, null);
    assert.equal(answer.result, 42);
    assert.deepEqual(answer.packages.loaded, [
      { name: "pure-dep", version: "1.2" },
      { name: "stand-in-dep", version: "1.0" },
      { name: "pure-top", version: "1.0" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the mirror script builds a mirror that a fresh server installs from", async () => {
  const dir = await tempDir();
  try {
    await writeLockIndex(`${dir}/upstream`, [STANDIN_DEP, STANDIN_TOP, STANDIN_NUMPY]);
    {
      await using upstream = new DirectoryServer(`${dir}/upstream`);
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-read=${ROOT},${dir}`,
          `--allow-write=${dir}`,
          "--allow-net=127.0.0.1",
          "scripts/mirror_packages.ts",
          "--from",
          upstream.url,
          "--out",
          `${dir}/mirror`,
          "standin_top",
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
      assert.equal(run.code, 0, out);
      assert.match(out, /2 copied, 0 already there/);
    }
    const files = [...Deno.readDirSync(`${dir}/mirror`)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      "pyodide-lock.json",
      "stand_in_dep-1.0-py3-none-any.whl",
      "stand_in_top-2.0-py3-none-any.whl",
    ]);
    // The upstream server is gone: everything now comes from the mirror directory.
    await using server = await startServer({
      policyText: policy({ index: `${dir}/mirror` }),
      readPaths: [dir],
    });
    const answer = await server.exec("import standin_top\nstandin_top.answer()", {
      packages: ["standin_top", "numpy"],
    });
    assert.equal(answer.result, 42);
    assert.equal(answer.packages.loaded.length, 2);
    assert.match(answer.packages.failed[0].reason, /'numpy' is built for Pyodide but the mirror/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("preloaded packages are importable in a new session at once", async () => {
  const dir = await tempDir();
  try {
    await writeLockIndex(dir, [STANDIN_NUMPY, STANDIN_PILLOW]);
    await using server = await startServer({
      policyText: policy({ index: dir, preload: ["numpy", "pillow"] }),
      readPaths: [dir],
    });
    assert.doesNotMatch(server.stderr, /cannot preload/);
    const session = await server.createSession();
    const answer = await server.exec("import numpy, PIL\n(numpy.STANDIN, PIL.STANDIN)", {
      session,
      packages: ["numpy", "pillow", "PIL"],
    });
    assert.deepEqual(answer.result, ["numpy stand-in", "pillow stand-in"]);
    assert.deepEqual(answer.packages.loaded, []);
    assert.equal(answer.packages.skipped.length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without network or mirror, start-up says so in one line and keeps serving", async () => {
  // The default policy preloads numpy and pillow from Pyodide's CDN, which tests cannot reach.
  await using server: TestServer = await startServer({ policy: "default" });
  const lines = server.stderr.split("\n").filter((l) => l.includes("cannot preload"));
  assert.equal(lines.length, 1, server.stderr);
  assert.match(lines[0], /cannot preload numpy, pillow from https:\/\/cdn\.jsdelivr\.net\//);
  const answer = await server.exec("import numpy", { packages: ["numpy", "math"] });
  assert.equal(answer.error?.pythonExceptionType, "ModuleNotFoundError");
  assert.match(answer.error!.message, /No module named 'numpy': package 'numpy' was not loaded/);
  assert.equal((await server.exec("6 * 7")).result, 42);
  // Code that imports a preload package without listing it learns the reason too.
  const unlisted = await server.exec("import PIL", { session: await server.createSession() });
  assert.match(unlisted.error!.message, /No module named 'PIL': package 'pillow' was not loaded/);
});
