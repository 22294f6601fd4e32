import assert from "node:assert/strict";
import { closest, editDistance } from "./suggest.ts";

Deno.test("editDistance counts insertions, deletions and substitutions", () => {
  assert.equal(editDistance("", ""), 0);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("timeoutMs", "timeoutMss"), 1);
  assert.equal(editDistance("abc", ""), 3);
});

Deno.test("closest finds the likely key or name, and nothing when none is close", () => {
  const keys = ["timeoutMs", "maxTimeoutMs", "memoryMb", "poolSize"];
  assert.equal(closest("timeoutMS", keys), "timeoutMs");
  assert.equal(closest("timeoutMss", keys), "timeoutMs");
  assert.equal(closest("maxTimeout", keys), "maxTimeoutMs");
  assert.equal(closest("memory", keys), "memoryMb");
  assert.equal(closest("bogus", keys), undefined);
  assert.equal(closest("x", keys), undefined);
  assert.equal(closest("stict", ["default", "deploy", "permissive", "strict"]), "strict");
  assert.equal(closest("defualt", ["default", "deploy", "permissive", "strict"]), "default");
});
