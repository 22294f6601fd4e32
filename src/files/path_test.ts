import assert from "node:assert/strict";
import { BadRequest } from "../errors.ts";
import { checkPath, filePath, rawPathname } from "./path.ts";

const refused = (segments: string[], pattern: RegExp) =>
  assert.throws(
    () => filePath(segments),
    (e) => e instanceof BadRequest && pattern.test(e.message),
  );

Deno.test("plain relative paths are accepted, percent-decoded", () => {
  assert.equal(filePath(["data.csv"]), "data.csv");
  assert.equal(filePath(["dir", "sub", "r%C3%A9sum%C3%A9.txt"]), "dir/sub/résumé.txt");
  assert.equal(filePath(["with%20space"]), "with space");
  assert.equal(checkPath("a/b"), "a/b");
});

Deno.test("paths that could leave the working directory are refused", () => {
  refused(["..", "etc", "passwd"], /'\.\.' segments/);
  refused(["a", "%2e%2e", "b"], /'\.\.' segments/);
  refused(["."], /'\.' segments/);
  refused(["", "etc", "passwd"], /absolute paths/);
  refused(["%2Fetc%2Fpasswd"], /encoded '\/'/);
  refused(["..%2F..%2Fetc"], /encoded '\/'/);
  refused(["a", ""], /empty segment/);
  refused([], /empty/);
});

Deno.test("NUL bytes, control characters and backslashes are refused", () => {
  refused(["a%00b"], /NUL/);
  refused(["a%0Ab"], /control characters/);
  refused(["..%5C..%5Cx"], /control characters and '\\'/);
  refused(["%ZZ"], /percent-encoded/);
});

Deno.test("over-long names and non-NFC names are refused", () => {
  refused(["a".repeat(256)], /longer than 255/);
  filePath(["a".repeat(255)]);
  refused(Array(300).fill("abcd"), /longer than 1024/);
  const nfd = encodeURIComponent("re\u0301sume\u0301.txt");
  refused([nfd], /NFC/);
});

Deno.test("the raw path keeps dot segments and backslashes as the client sent them", () => {
  assert.equal(rawPathname("http://h:1/files/../etc/passwd?x=1"), "/files/../etc/passwd");
  assert.equal(
    rawPathname("http://h/v1/sessions/a/files/./m.txt#f"),
    "/v1/sessions/a/files/./m.txt",
  );
  assert.equal(rawPathname("http://h/files/a\\b"), "/files/a\\b");
  assert.equal(rawPathname("http://h"), "/");
});
