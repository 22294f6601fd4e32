import assert from "node:assert/strict";
import { canonicalName, classifyRequested } from "./names.ts";

Deno.test("a canonical name is lower case with runs of -, _ and . made one dash", () => {
  assert.equal(canonicalName("scikit_learn"), "scikit-learn");
  assert.equal(canonicalName("Zope.Interface"), "zope-interface");
  assert.equal(canonicalName("Foo__-._Bar"), "foo-bar");
  assert.equal(canonicalName("requests"), "requests");
});

Deno.test("plain package and import names are looked up as given", () => {
  assert.deepEqual(classifyRequested(["numpy", "PIL", "scikit-learn", "ruamel-yaml"]), [
    { kind: "name", entry: "numpy", name: "numpy" },
    { kind: "name", entry: "PIL", name: "PIL" },
    { kind: "name", entry: "scikit-learn", name: "scikit-learn" },
    { kind: "name", entry: "ruamel-yaml", name: "ruamel-yaml" },
  ]);
});

Deno.test("a module path loads through its top-level module", () => {
  assert.deepEqual(classifyRequested(["numpy.linalg"]), [
    { kind: "name", entry: "numpy.linalg", name: "numpy" },
  ]);
});

Deno.test("standard-library modules are skipped, module paths included", () => {
  for (const entry of ["math", "json", "os.path", "collections.abc", "asyncio"]) {
    const [one] = classifyRequested([entry]);
    assert.equal(one.kind, "skip", entry);
    assert.ok(one.kind === "skip" && /standard library/.test(one.reason), entry);
  }
});

Deno.test("wildcard patterns are skipped: they name no package", () => {
  for (const entry of ["*", "numpy.*", "os.*"]) {
    const [one] = classifyRequested([entry]);
    assert.equal(one.kind, "skip", entry);
    assert.ok(one.kind === "skip" && /wildcard/.test(one.reason), entry);
  }
});

Deno.test("URLs are refused whatever the policy says", () => {
  for (
    const entry of [
      "https://example.com/evil-1.0-py3-none-any.whl",
      "git+https://github.com/o/r",
      "file:///etc/passwd",
      "evil @ https://example.com/evil.whl",
    ]
  ) {
    const [one] = classifyRequested([entry]);
    assert.equal(one.kind, "refuse", entry);
    assert.ok(one.kind === "refuse" && /URL/.test(one.reason), entry);
  }
});

Deno.test("file paths and archives are refused", () => {
  for (const entry of ["./pkg", "/tmp/x", "..\\pkg", "~/pkg", "evil-1.0-py3-none-any.whl"]) {
    const [one] = classifyRequested([entry]);
    assert.equal(one.kind, "refuse", entry);
    assert.ok(one.kind === "refuse" && /path/.test(one.reason), entry);
  }
});

Deno.test("versions, extras and other non-names are refused", () => {
  for (const entry of ["requests>=2", "pandas==2.0", "requests[socks]", "-e", "foo bar", "foo-"]) {
    const [one] = classifyRequested([entry]);
    assert.equal(one.kind, "refuse", entry);
    assert.ok(one.kind === "refuse" && /not a valid package name/.test(one.reason), entry);
  }
});

Deno.test("an empty entry is skipped and entries are trimmed", () => {
  assert.deepEqual(classifyRequested(["", "  numpy  "]), [
    { kind: "skip", entry: "", reason: "empty name" },
    { kind: "name", entry: "numpy", name: "numpy" },
  ]);
});

Deno.test("a repeated entry is classified once, at its first place", () => {
  const out = classifyRequested(["numpy", "math", "NumPy", " numpy", "https://x/y", "https://x/y"]);
  assert.deepEqual(out.map((r) => [r.kind, r.entry]), [
    ["name", "numpy"],
    ["skip", "math"],
    ["refuse", "https://x/y"],
  ]);
});

Deno.test("nothing requested, nothing classified", () => {
  assert.deepEqual(classifyRequested([]), []);
});
