import assert from "node:assert/strict";
import { readConfig } from "../config.ts";
import { peerGrants } from "../permissions/flags.ts";
import { MemoryBackend } from "../store/memory.ts";
import { targetOf } from "./forward.ts";
import { hopHeader, HopVerifier } from "./hop.ts";
import { Instances } from "./instances.ts";
import { peerKeys } from "./keys.ts";

Deno.test("a request's session comes from its path; an MCP session's instance from its id", () => {
  assert.deepEqual(targetOf("/"), { session: "default" });
  assert.deepEqual(targetOf("/files/a/b.txt"), { session: "default" });
  assert.deepEqual(targetOf("/tool-results"), { session: "default" });
  assert.deepEqual(targetOf("/v1/sessions/abc"), { session: "abc" });
  assert.deepEqual(targetOf("/v1/sessions/abc/files/x"), { session: "abc" });
  assert.deepEqual(targetOf("/v1/sessions/a%20b/reset"), { session: "a b" });
  assert.equal(targetOf("/v1/sessions"), undefined);
  assert.equal(targetOf("/v1/sessions/%E0%A4%A"), undefined);
  assert.equal(targetOf("/health"), undefined);
  assert.deepEqual(targetOf("/mcp", "moat-a~1234"), { instance: "moat-a" });
  assert.equal(targetOf("/mcp", "no-instance"), undefined);
  assert.equal(targetOf("/mcp"), undefined);
});

Deno.test("a hop header verifies once, for its receiver, path and time only", async () => {
  const keys = await peerKeys("a-store-key-0123456789");
  const b = new HopVerifier(keys.hops, "B");
  const header = hopHeader(keys.hops, "A", "B", "POST", "/v1/sessions/x");
  assert.deepEqual(b.verify(header, "POST", "/v1/sessions/x"), { from: "A" });
  assert.equal(b.verify(header, "POST", "/v1/sessions/x"), "replayed");
  const again = hopHeader(keys.hops, "A", "B", "POST", "/v1/sessions/x");
  assert.equal(b.verify(again, "GET", "/v1/sessions/x"), "bad signature");
  assert.equal(b.verify(again, "POST", "/v1/sessions/y"), "bad signature");
  assert.match(
    String(new HopVerifier(keys.hops, "C").verify(again, "POST", "/v1/sessions/x")),
    /addressed to instance 'B'/,
  );
  const [v, from, to, , nonce, mac] = again.split(" ");
  const old = [v, from, to, Date.now() - 60_000, nonce, mac].join(" ");
  assert.equal(b.verify(old, "POST", "/v1/sessions/x"), "expired");
  const other = await peerKeys("another-store-key-0123456789");
  assert.equal(b.verify(hopHeader(other.hops, "A", "B", "GET", "/"), "GET", "/"), "bad signature");
  assert.equal(b.verify("v1 A B", "GET", "/"), "malformed");
});

Deno.test("a hop names its tenant, signed: another tenant's name or none does not verify", async () => {
  const keys = await peerKeys("a-store-key-0123456789");
  const b = new HopVerifier(keys.hops, "B");
  const header = hopHeader(keys.hops, "A", "B", "GET", "/", "acme");
  assert.deepEqual(b.verify(header, "GET", "/"), { from: "A", tenant: "acme" });
  const again = hopHeader(keys.hops, "A", "B", "GET", "/", "acme");
  assert.equal(b.verify(again.replace(/ acme$/, " globex"), "GET", "/"), "bad signature");
  assert.equal(b.verify(again.replace(/ acme$/, ""), "GET", "/"), "bad signature");
  assert.deepEqual(targetOf("/", undefined, "default.acme"), { session: "default.acme" });
});

Deno.test("heartbeats: a record verifies only under the key, for the id it names", async () => {
  const store = new MemoryBackend();
  const keys = await peerKeys("a-store-key-0123456789");
  const a = new Instances({ store, keys, instanceId: "A", url: "http://10.0.0.1:8000" });
  const b = new Instances({ store, keys, instanceId: "B" });
  await a.start();
  await b.start();
  try {
    assert.equal((await b.lookup("A"))?.url, "http://10.0.0.1:8000");
    assert.deepEqual((await a.others()).map((r) => r.id), ["B"]);
    // Copied under another id, or written by someone without the key: not an instance.
    await store.putInstance("C", (await store.getInstance("A"))!, 3000);
    assert.equal(await b.lookup("C", true), undefined);
    const forged = btoa(JSON.stringify({ id: "D", url: "http://evil", pid: 1, started: 0 }));
    await store.putInstance("D", `${forged}.AAAA`, 3000);
    assert.equal(await b.lookup("D", true), undefined);
    await a.stop();
    assert.equal(await b.lookup("A", true), undefined, "gone when it stops");
  } finally {
    await a.stop();
    await b.stop();
  }
});

Deno.test("MOAT_ADVERTISE_URL is an origin on a shared store; the peers it grants", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(
    readConfig(env({ MOAT_ADVERTISE_URL: "http://10.0.0.1:8000/" })).advertiseUrl,
    "http://10.0.0.1:8000",
  );
  for (
    const [bad, why] of [
      ["10.0.0.1:8000", /must be a URL/],
      ["ftp://10.0.0.1:8000", /must start with http/],
      ["not a url", /must be a URL/],
      ["http://10.0.0.1:8000/moat", /must be an origin/],
      ["http://u:p@10.0.0.1:8000", /user or password/],
    ] as const
  ) {
    assert.throws(() => readConfig(env({ MOAT_ADVERTISE_URL: bad })), why);
  }
  assert.throws(
    () => readConfig(env({ MOAT_ADVERTISE_URL: "http://h:1", MOAT_STORE: "memory" })),
    /MOAT_ADVERTISE_URL: needs a store the instances share/,
  );
  assert.deepEqual(peerGrants("http://127.0.0.1:8001"), ["127.0.0.1"]);
  assert.deepEqual(peerGrants("http://[::1]:8001"), ["[::1]"]);
  assert.deepEqual(peerGrants("http://moat-1.moat-peers.ns.svc.cluster.local:8000"), [
    "moat-1.moat-peers.ns.svc.cluster.local",
    "*.moat-peers.ns.svc.cluster.local:8000",
  ]);
  assert.deepEqual(peerGrants("https://moat-1.internal"), ["moat-1.internal"]);
  assert.deepEqual(peerGrants("https://a.b.example"), ["a.b.example", "*.b.example:443"]);
});
