import assert from "node:assert/strict";
import {
  compareVersions,
  evaluateMarker,
  isPrerelease,
  parseRequirement,
  parseVersion,
  PYODIDE_MARKERS,
  satisfies,
} from "./requirements.ts";

function version(text: string) {
  const v = parseVersion(text);
  assert.ok(v, `${text} should parse`);
  return v;
}

Deno.test("a version is read into its epoch, release, pre, post and dev parts", () => {
  assert.deepEqual(parseVersion("1!2.3.4rc5.post6.dev7"), {
    epoch: 1,
    release: [2, 3, 4],
    pre: [2, 5],
    post: 6,
    dev: 7,
  });
  assert.deepEqual(parseVersion("2.0"), {
    epoch: 0,
    release: [2, 0],
    pre: undefined,
    post: undefined,
    dev: undefined,
  });
});

Deno.test("alternative spellings of a version mean the same version", () => {
  const same = (a: string, b: string) => assert.equal(compareVersions(version(a), version(b)), 0);
  same("1.0alpha1", "1.0a1");
  same("1.0-beta.2", "1.0b2");
  same("1.0c1", "1.0rc1");
  same("1.0-1", "1.0.post1");
  same("1.0rev2", "1.0.post2");
  same("1.0.dev", "1.0.dev0");
  same("v1.0", "1.0");
  same("1.0", "1.0.0");
  same("1.0+local.7", "1.0");
});

Deno.test("text that is not a version is not read as one", () => {
  for (const text of ["", "latest", "1.0-foo", "1..0", "a1.0"]) {
    assert.equal(parseVersion(text), undefined, text);
  }
});

Deno.test("versions sort as PEP 440 says: dev, pre, final, post, then the next release", () => {
  const ordered = [
    "1.0.dev0",
    "1.0a1.dev0",
    "1.0a1",
    "1.0a1.post1.dev0",
    "1.0a1.post1",
    "1.0a2",
    "1.0b1",
    "1.0rc1",
    "1.0",
    "1.0.post1.dev0",
    "1.0.post1",
    "1.0.post2",
    "1.0.1",
    "1.1.dev0",
    "1.1",
    "1.10",
    "2.0",
    "1!0.1",
  ];
  for (let i = 0; i < ordered.length - 1; i++) {
    const [a, b] = [ordered[i], ordered[i + 1]];
    assert.ok(compareVersions(version(a), version(b)) < 0, `${a} < ${b}`);
    assert.ok(compareVersions(version(b), version(a)) > 0, `${b} > ${a}`);
  }
  const shuffled = [...ordered].reverse().map(version).sort(compareVersions);
  assert.deepEqual(shuffled, ordered.map(version));
});

Deno.test("pre-releases and dev releases are pre-releases, post-releases are not", () => {
  assert.equal(isPrerelease(version("1.0a1")), true);
  assert.equal(isPrerelease(version("1.0rc2")), true);
  assert.equal(isPrerelease(version("1.0.dev3")), true);
  assert.equal(isPrerelease(version("1.0.post1.dev0")), true);
  assert.equal(isPrerelease(version("1.0")), false);
  assert.equal(isPrerelease(version("1.0.post1")), false);
});

Deno.test("ordered comparisons hold for each operator", () => {
  assert.equal(satisfies("2.0", ">=2.0"), true);
  assert.equal(satisfies("1.9", ">=2.0"), false);
  assert.equal(satisfies("2.0", ">2.0"), false);
  assert.equal(satisfies("2.0.1", ">2.0"), true);
  assert.equal(satisfies("2.0", "<=2.0"), true);
  assert.equal(satisfies("2.0", "<2.0"), false);
  assert.equal(satisfies("2.0.0", "==2.0"), true);
  assert.equal(satisfies("2.0", "!=2.0"), false);
  assert.equal(satisfies("2.1", "!=2.0"), true);
});

Deno.test("a specifier set holds only when every clause holds", () => {
  assert.equal(satisfies("2.5", ">=2.0, <3"), true);
  assert.equal(satisfies("3.0", ">=2.0,<3"), false);
  assert.equal(satisfies("2.1.4", ">=2.0,!=2.1.*,<3"), false);
  assert.equal(satisfies("2.2", ">=2.0,!=2.1.*,<3"), true);
  assert.equal(satisfies("1.0", ""), true);
});

Deno.test("a wildcard matches every version with that prefix", () => {
  assert.equal(satisfies("2.1", "==2.1.*"), true);
  assert.equal(satisfies("2.1.7", "==2.1.*"), true);
  assert.equal(satisfies("2.10", "==2.1.*"), false);
  assert.equal(satisfies("2.2", "!=2.1.*"), true);
  assert.equal(satisfies("1!2.1", "==2.1.*"), false);
});

Deno.test("a compatible release stays within its last-but-one component", () => {
  assert.equal(satisfies("2.2", "~=2.2"), true);
  assert.equal(satisfies("2.9", "~=2.2"), true);
  assert.equal(satisfies("3.0", "~=2.2"), false);
  assert.equal(satisfies("2.1", "~=2.2"), false);
  assert.equal(satisfies("1.4.9", "~=1.4.5"), true);
  assert.equal(satisfies("1.5.0", "~=1.4.5"), false);
});

Deno.test("arbitrary equality compares the text exactly", () => {
  assert.equal(satisfies("1.0", "===1.0"), true);
  assert.equal(satisfies("1.0.0", "===1.0"), false);
});

Deno.test("an unreadable version or specifier satisfies nothing", () => {
  assert.equal(satisfies("latest", ">=1"), false);
  assert.equal(satisfies("1.0", "=>1"), false);
  assert.equal(satisfies("1.0", ">=banana"), false);
});

Deno.test("Pyodide's Python satisfies usual Requires-Python ranges", () => {
  const python = PYODIDE_MARKERS.python_full_version;
  assert.equal(satisfies(python, ">=3.8"), true);
  assert.equal(satisfies(python, ">=3.9,<4"), true);
  assert.equal(satisfies(python, "<3.12"), false);
  assert.equal(satisfies(python, "==3.14.*"), true);
});

Deno.test("a requirement is read into its name, specifier and marker", () => {
  assert.deepEqual(parseRequirement("requests>=2.0"), {
    name: "requests",
    specifier: ">=2.0",
    marker: undefined,
  });
  assert.deepEqual(parseRequirement("zope.interface >= 5, < 7 ; python_version >= '3.8'"), {
    name: "zope.interface",
    specifier: ">=5,<7",
    marker: "python_version >= '3.8'",
  });
  assert.deepEqual(parseRequirement("six"), { name: "six", specifier: "", marker: undefined });
});

Deno.test("extras are skipped and a parenthesized specifier is unwrapped", () => {
  assert.deepEqual(parseRequirement("requests[socks, security] (>=2.0,<3)"), {
    name: "requests",
    specifier: ">=2.0,<3",
    marker: undefined,
  });
  assert.deepEqual(parseRequirement('pytest[testing]; extra == "test"'), {
    name: "pytest",
    specifier: "",
    marker: 'extra == "test"',
  });
});

Deno.test("a direct URL requirement keeps its URL apart from any marker", () => {
  assert.deepEqual(
    parseRequirement("pip @ https://example.com/pip-1.0-py3-none-any.whl ; os_name == 'posix'"),
    {
      name: "pip",
      specifier: "",
      marker: "os_name == 'posix'",
      url: "https://example.com/pip-1.0-py3-none-any.whl",
    },
  );
});

Deno.test("a line that names no package is not a requirement", () => {
  assert.equal(parseRequirement(""), undefined);
  assert.equal(parseRequirement(">=1.0"), undefined);
  assert.equal(parseRequirement("; python_version > '3'"), undefined);
});

Deno.test("version markers compare as versions against Pyodide's Python", () => {
  assert.equal(evaluateMarker('python_version >= "3.8"'), true);
  assert.equal(evaluateMarker('python_version >= "3.10"'), true); // not compared as text
  assert.equal(evaluateMarker("python_version < '3.10'"), false);
  assert.equal(evaluateMarker('python_full_version == "3.14.*"'), true);
  assert.equal(evaluateMarker('"3.10" <= python_version'), true);
  assert.equal(evaluateMarker('"3.15" < python_version'), false);
});

Deno.test("platform markers describe wasm32 Emscripten CPython", () => {
  assert.equal(evaluateMarker('sys_platform == "emscripten"'), true);
  assert.equal(evaluateMarker('sys_platform == "win32"'), false);
  assert.equal(evaluateMarker('platform_system != "Windows"'), true);
  assert.equal(evaluateMarker('os_name == "nt"'), false);
  assert.equal(evaluateMarker('platform_machine == "wasm32"'), true);
  assert.equal(evaluateMarker('implementation_name == "cpython"'), true);
  assert.equal(evaluateMarker('platform_python_implementation == "PyPy"'), false);
});

Deno.test("no extra is requested, so extra-only dependencies are skipped", () => {
  assert.equal(evaluateMarker('extra == "test"'), false);
  assert.equal(evaluateMarker('extra != "test"'), true);
});

Deno.test("markers combine with and, or, not in and parentheses", () => {
  assert.equal(evaluateMarker('os_name == "posix" and python_version >= "3.8"'), true);
  assert.equal(evaluateMarker('os_name == "nt" and python_version >= "3.8"'), false);
  assert.equal(evaluateMarker('os_name == "nt" or sys_platform == "emscripten"'), true);
  assert.equal(
    evaluateMarker('(os_name == "nt" or sys_platform == "emscripten") and extra == "x"'),
    false,
  );
  assert.equal(
    evaluateMarker('os_name == "posix" and (extra == "x" or python_version >= "3")'),
    true,
  );
  // `and` binds tighter than `or`.
  assert.equal(evaluateMarker('os_name == "posix" or os_name == "nt" and extra == "x"'), true);
  assert.equal(evaluateMarker('"emscripten" in sys_platform'), true);
  assert.equal(evaluateMarker('"win" not in sys_platform'), true);
  assert.equal(evaluateMarker('sys_platform in "linux darwin"'), false);
});

Deno.test("an unreadable marker counts as false, so its dependency is skipped", () => {
  assert.equal(evaluateMarker(""), false);
  assert.equal(evaluateMarker("python_version >="), false);
  assert.equal(evaluateMarker("!!!"), false);
});

Deno.test("another marker environment can be passed in", () => {
  const windows = { ...PYODIDE_MARKERS, sys_platform: "win32", python_version: "3.9" };
  assert.equal(evaluateMarker('sys_platform == "win32"', windows), true);
  assert.equal(evaluateMarker('python_version < "3.10"', windows), true);
});
