import assert from "node:assert/strict";
import { readConfig } from "../config.ts";
import { parseStoreSetting } from "./setting.ts";

Deno.test("MOAT_STORE names kv, a KV file, a Redis or memory", () => {
  assert.deepEqual(parseStoreSetting(undefined), { kind: "kv" });
  assert.deepEqual(parseStoreSetting("kv"), { kind: "kv" });
  assert.deepEqual(parseStoreSetting("memory"), { kind: "memory" });
  assert.deepEqual(parseStoreSetting("kv:/var/lib/moat/s.kv"), {
    kind: "kv",
    path: "/var/lib/moat/s.kv",
  });
  assert.ok(parseStoreSetting("kv:data/s.kv").kind === "kv");
  assert.deepEqual(parseStoreSetting("redis://127.0.0.1:6380/2"), {
    kind: "redis",
    url: "redis://127.0.0.1:6380/2",
    host: "127.0.0.1:6380",
    db: 2,
  });
  assert.equal((parseStoreSetting("redis://cache") as { host: string }).host, "cache:6379");
});

Deno.test("a bad MOAT_STORE stops start-up with a message naming it, without a password", () => {
  for (const bad of ["sqlite", "kv:", "kv:/tmp/", "redis://:secret@host/x", "http://x"]) {
    assert.throws(() => parseStoreSetting(bad), (err: Error) => {
      assert.match(err.message, /^MOAT_STORE '/);
      assert.ok(!err.message.includes("secret"), err.message);
      return true;
    });
  }
  assert.throws(() => readConfig((n) => n === "MOAT_STORE" ? "sqlite" : undefined), /MOAT_STORE/);
});

Deno.test("a Redis store requires MOAT_STORE_KEY; a single machine does not", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.throws(
    () => readConfig(env({ MOAT_STORE: "redis://127.0.0.1:6379/0" })),
    /MOAT_STORE_KEY: must be set when MOAT_STORE is a shared Redis/,
  );
  const config = readConfig(env({
    MOAT_STORE: "redis://127.0.0.1:6379/0",
    MOAT_STORE_KEY: "0123456789abcdef0123",
    MOAT_STORE_PREFIX: "staging",
  }));
  assert.equal(config.storePrefix, "staging");
  assert.equal(readConfig(env({})).store.kind, "kv");
  assert.equal(readConfig(env({})).storePrefix, "moat");
  assert.throws(() => readConfig(env({ MOAT_STORE_PREFIX: "a b" })), /MOAT_STORE_PREFIX/);
});
