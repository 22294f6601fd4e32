import assert from "node:assert/strict";
import { startServer, TestServer } from "./helpers/server.ts";

Deno.test("the HTTP edge answers bad input with clear JSON errors", async (t) => {
  await using server = await startServer({
    policyText: "limits:\n  bodyBytes: 100000\n",
  });

  await t.step("/health needs no token", async () => {
    const res = await server.request("/health", { auth: false });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).status, "ok");
  });

  for (
    const [what, headers] of [
      ["a missing token", {}],
      ["a wrong token", { Authorization: "Bearer wrong-token-xxxxxxxxxxxx" }],
      ["a malformed Authorization header", { Authorization: "Basic abc" }],
    ] as [string, Record<string, string>][]
  ) {
    await t.step(`${what} gets 401 JSON`, async () => {
      const res = await server.request("/", {
        method: "POST",
        body: JSON.stringify({ code: "1" }),
        headers,
        auth: false,
      });
      assert.equal(res.status, 401);
      const body = await res.json();
      assert.equal(body.error.name, "Unauthorized");
    });
  }

  const bad: [string, string, RegExp][] = [
    ["a body that is not JSON", "{not json", /not valid JSON/],
    ["an empty body", "", /empty/],
    ["a JSON array", "[1]", /must be a JSON object/],
    ["a missing code", JSON.stringify({ packages: [] }), /Field 'code': is required/],
    ["code that is a number", JSON.stringify({ code: 5 }), /Field 'code': must be a string/],
    [
      "packages that is a string",
      JSON.stringify({ code: "1", packages: "numpy" }),
      /Field 'packages'/,
    ],
    [
      "packages holding a number",
      JSON.stringify({ code: "1", packages: [1] }),
      /Field 'packages.0'/,
    ],
    ["a negative timeoutMs", JSON.stringify({ code: "1", timeoutMs: -5 }), /Field 'timeoutMs'/],
  ];
  for (const [what, body, message] of bad) {
    await t.step(`${what} gets 400 naming the problem`, async () => {
      const res = await server.post("/", body);
      assert.equal(res.status, 400);
      assert.equal(res.body.error.name, "BadRequest");
      assert.match(res.body.error.message, message);
    });
  }

  await t.step("a request asking for more time than the policy's maximum is a 400", async () => {
    const refusal = {
      error: {
        name: "BadRequest",
        message: "timeoutMs 1000000000 is above this server's limit (limits.maxTimeoutMs: 300000)",
      },
    };
    const session = await server.createSession();
    for (const path of ["/", `/v1/sessions/${session}`]) {
      const res = await server.post(path, { code: "ran = True", timeoutMs: 10 ** 9 });
      assert.equal(res.status, 400, path);
      assert.deepEqual(res.body, refusal);
      // Streamed calls are refused the same way, before any event.
      const streamed = await server.request(path, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify({ code: "ran = True", timeoutMs: 10 ** 9 }),
      });
      assert.equal(streamed.status, 400, path);
      assert.deepEqual(await streamed.json(), refusal);
      // The code did not run; the maximum itself is accepted.
      const check = await server.exec("'ran' in globals()", {
        session: path === "/" ? undefined : session,
        timeoutMs: 300_000,
      });
      assert.equal(check.result, false);
    }
  });

  await t.step("a body over the policy's limit gets 413", async () => {
    const res = await server.post("/", { code: "x = '" + "a".repeat(200_000) + "'" });
    assert.equal(res.status, 413);
    assert.equal(res.body.error.name, "PayloadTooLarge");
  });

  await t.step("an unknown route gets 404 JSON", async () => {
    const res = await server.request("/nope");
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.name, "NotFound");
  });

  await t.step("after all that the server still runs code", async () => {
    assert.equal((await server.exec("'still here'")).result, "still here");
  });
});

Deno.test("the server refuses to start with an invalid policy and names the key", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["an unknown key", "limits:\n  timeoutMss: 5\n", /limits.*timeoutMss/],
    ["a wrong type", "limits:\n  timeoutMs: fast\n", /limits\.timeoutMs/],
    ["an impossible value", "limits:\n  timeoutMs: -1\n", /limits\.timeoutMs/],
    ["broken YAML", "limits: [\n", /not valid YAML/],
  ];
  for (const [what, policyText, message] of cases) {
    await t.step(`${what} stops start-up with a message naming it`, async () => {
      await using server = new TestServer({ policyText });
      await assert.rejects(() => server.start(60_000), (err: Error) => {
        assert.match(err.message, /exited with code 1/);
        assert.match(err.message, message);
        assert.match(err.message, /policy\.yaml/);
        return true;
      });
    });
  }

  await t.step("an unknown policy name stops start-up", async () => {
    await using server = new TestServer({ policy: "no-such-policy" });
    await assert.rejects(
      () => server.start(60_000),
      /MOAT_POLICY 'no-such-policy' names no policy .*default, deploy, permissive, strict/,
    );
  });
});
