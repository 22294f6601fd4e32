/**
 * Malformed and oversized HTTP input, and a property-based fuzz of the request body: no input
 * may produce a 5xx or take the server down.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { startServer } from "../helpers/server.ts";
import { assertHealthy } from "./attempts.ts";

Deno.test("malformed or oversized HTTP input never gets a 5xx", async (t) => {
  await using server = await startServer({
    policyText: "limits:\n  bodyBytes: 65536\n  timeoutMs: 2000\n",
  });
  const send = async (path: string, body: BodyInit, headers: Record<string, string> = {}) => {
    const res = await server.request(path, { method: "POST", body, headers });
    await res.body?.cancel();
    return res.status;
  };

  await t.step("a body over the policy's limit gets 413", async () => {
    assert.equal(await send("/", "x".repeat(100_000)), 413);
  });
  await t.step("a body that lies about its length is refused without a 5xx", async () => {
    const status = await send("/", JSON.stringify({ code: "1" }), { "content-length": "999999" })
      .catch(() => 400);
    assert.ok(status < 500, `${status}`);
  });
  await t.step("invalid UTF-8 in the body gets 400", async () => {
    assert.equal(await send("/", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), 400);
  });
  await t.step("JSON nested 30 000 deep gets 400, not a stack overflow", async () => {
    assert.equal(await send("/", "[".repeat(30_000) + "]".repeat(30_000)), 400);
  });
  await t.step("a session id with path traversal gets 404", async () => {
    const res = await server.request("/v1/sessions/..%2F..%2Fetc%2Fpasswd", { method: "GET" });
    await res.body?.cancel();
    assert.equal(res.status, 404);
  });
  await t.step("the token in the query string is not accepted", async () => {
    const res = await server.request(`/?token=${server.token}`, { auth: false });
    await res.body?.cancel();
    assert.equal(res.status, 401);
  });
  await t.step("a code field holding NUL bytes and lone surrogates is answered", async () => {
    assert.ok((await send("/", JSON.stringify({ code: "\u0000\ud800x" }))) < 500);
  });

  await t.step("fuzzed request bodies never get a 5xx (fast-check)", async () => {
    const body = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.json({ maxDepth: 4 }),
      fc.record({
        code: fc.oneof(fc.string({ maxLength: 200 }), fc.integer(), fc.constant(null)),
        packages: fc.oneof(fc.array(fc.string({ maxLength: 20 }), { maxLength: 5 }), fc.string()),
        timeoutMs: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 5 })),
      }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
      fc.uint8Array({ maxLength: 300 }),
    );
    const path = fc.constantFrom("/", "/v1/sessions", "/v1/sessions/default", "/v1/sessions/nope");
    await fc.assert(
      fc.asyncProperty(path, body, async (where, payload) => {
        const status = await send(where, payload as BodyInit, {
          "content-type": "application/json",
        });
        assert.ok(status < 500, `${where} answered ${status} for ${String(payload).slice(0, 80)}`);
      }),
      { numRuns: 150, seed: 4242 },
    );
  });

  await t.step("after the fuzz the server is healthy", () => assertHealthy(server));
});
