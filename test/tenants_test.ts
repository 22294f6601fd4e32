/**
 * Tenants (`MOAT_TENANTS`, PROTOCOL.md §6), attacked: tenant B on every route of tenant A's
 * session (HTTP, SSE, files, tool results, MCP) gets what a session that never existed gets;
 * lists and default sessions are each tenant's own; quotas hold under concurrent creates and
 * calls; ownership survives a restart; SIGHUP cuts a removed tenant off at once; tokens are
 * never logged; a bad file stops the start naming the key.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { INITIALIZE } from "./helpers/mcp.ts";
import { as } from "./helpers/principal.ts";
import { startServer } from "./helpers/server.ts";

const ACME = "acme-token-0123456789abcdef";
const GLOBEX = "globex-token-0123456789abcdef";
const sha = (t: string) => createHash("sha256").update(t).digest("hex");

function tenantsFile(extra = ""): string {
  return `tenants:
  - name: acme
    token: "\${MOAT_TEST_ACME_TOKEN}"
    limits: { sessions: 4, callsPerMinute: 600 }
  - name: globex
    token: "sha256:${sha(GLOBEX)}"
    limits: { callsPerMinute: 6 }
${extra}`;
}

const idOf = (s: { id: string }) => s.id;
const post = (code: string) => ({ method: "POST", body: JSON.stringify({ code }) });

Deno.test("tenants reach only their own sessions, within their quotas", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenants-" });
  const file = `${dir}/tenants.yaml`;
  await Deno.writeTextFile(file, tenantsFile());
  try {
    await using server = await startServer({
      env: { MOAT_TENANTS: file, MOAT_TEST_ACME_TOKEN: ACME, MOAT_STORE: "memory" },
    });
    const created = await as(server, ACME, "/v1/sessions", { method: "POST" });
    assert.equal(created.status, 201);
    const a = created.body.id as string;
    assert.equal(created.body.tenant, "acme");
    assert.equal((await as(server, ACME, `/v1/sessions/${a}`, post("secret = 41"))).status, 200);

    await t.step(
      "tenant B gets, on every route of A's session, what a missing one gets",
      async () => {
        const missing = crypto.randomUUID();
        const routes: [string, string, RequestInit][] = [
          ["details", "/v1/sessions/ID", {}],
          ["execute", "/v1/sessions/ID", post("secret")],
          ["stream", "/v1/sessions/ID", {
            ...post("secret"),
            headers: { accept: "text/event-stream" },
          }],
          ["reset", "/v1/sessions/ID/reset", { method: "POST" }],
          ["delete", "/v1/sessions/ID", { method: "DELETE" }],
          ["file list", "/v1/sessions/ID/files", {}],
          ["file put", "/v1/sessions/ID/files/x.txt", { method: "PUT", body: "planted" }],
          ["file get", "/v1/sessions/ID/files/x.txt", {}],
          ["file delete", "/v1/sessions/ID/files/x.txt", { method: "DELETE" }],
          ["tool result", "/v1/sessions/ID/tool-results", {
            method: "POST",
            body: JSON.stringify({ id: "x", result: 1 }),
          }],
        ];
        for (const [what, path, init] of routes) {
          const theirs = await as(server, GLOBEX, path.replace("ID", a), init);
          const none = await as(server, GLOBEX, path.replace("ID", missing), init);
          assert.equal(theirs.status, 404, what);
          assert.equal(
            JSON.stringify(theirs.body).replaceAll(a, "ID"),
            JSON.stringify(none.body).replaceAll(missing, "ID"),
            `${what}: the answer tells nothing`,
          );
        }
        const still = await as(server, ACME, `/v1/sessions/${a}`, post("secret + 1"));
        assert.equal(still.body.result, 42, "A's session is untouched");
        const files = await as(server, ACME, `/v1/sessions/${a}/files`);
        assert.deepEqual(files.body.files, [], "nothing was planted");
      },
    );

    await t.step(
      "lists and default sessions are each tenant's own; the operator sees all",
      async () => {
        const b = (await as(server, GLOBEX, "/v1/sessions", { method: "POST" })).body.id;
        const acmeList = (await as(server, ACME, "/v1/sessions")).body.sessions.map(idOf);
        const globexList = (await as(server, GLOBEX, "/v1/sessions")).body.sessions.map(idOf);
        assert.ok(acmeList.includes(a) && !acmeList.includes(b));
        assert.ok(globexList.includes(b) && !globexList.includes(a));
        const all = (await as(server, server.token, "/v1/sessions")).body.sessions.map(idOf);
        assert.ok(all.includes(a) && all.includes(b));

        assert.equal((await as(server, ACME, "/", post("mine = 'acme'"))).body.error, null);
        const other = await as(server, GLOBEX, "/", post("mine"));
        assert.equal(other.body.error.pythonExceptionType, "NameError");
        const operator = await as(server, server.token, "/", post("mine"));
        assert.equal(operator.body.error.pythonExceptionType, "NameError");
        assert.equal((await as(server, ACME, "/", post("mine"))).body.result, "acme");
        await as(server, ACME, "/files/note.txt", { method: "PUT", body: "acme's" });
        assert.equal((await as(server, GLOBEX, "/files/note.txt")).status, 404);
        assert.equal((await as(server, ACME, "/files/note.txt")).body, "acme's");
        // The operator reaches a tenant's session, the default one included.
        const op = await as(server, server.token, `/v1/sessions/${a}`, post("secret"));
        assert.equal(op.body.result, 41);
        assert.equal((await as(server, GLOBEX, "/v1/sessions/default.acme")).status, 404);
        assert.equal((await as(server, server.token, "/v1/sessions/default.acme")).status, 200);
      },
    );

    await t.step("an MCP session is its opener's: another tenant's id is 404", async () => {
      const init = await fetch(`${server.url}/mcp`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${ACME}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, ...INITIALIZE }),
      });
      await init.body?.cancel();
      const sid = init.headers.get("mcp-session-id")!;
      assert.ok(sid);
      const list = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" });
      const headers = (token: string) => ({
        Authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": sid,
        "mcp-protocol-version": "2025-06-18",
      });
      const theirs = await fetch(`${server.url}/mcp`, {
        method: "POST",
        headers: headers(GLOBEX),
        body: list,
      });
      await theirs.body?.cancel();
      assert.equal(theirs.status, 404);
      const mine = await fetch(`${server.url}/mcp`, {
        method: "POST",
        headers: headers(ACME),
        body: list,
      });
      assert.equal(mine.status, 200);
      await mine.body?.cancel();
    });

    await t.step("limits.sessions holds under concurrent creates: no overshoot", async () => {
      const held = (await as(server, ACME, "/v1/sessions")).body.sessions.length;
      const tries = await Promise.all(
        Array.from({ length: 6 }, () => as(server, ACME, "/v1/sessions", { method: "POST" })),
      );
      const made = tries.filter((r) => r.status === 201).length;
      assert.equal(made, 4 - held);
      const refused = tries.find((r) => r.status === 429)!;
      assert.match(refused.body.error.message, /Tenant 'acme' holds its limits\.sessions \(4\)/);
      assert.equal((await as(server, ACME, "/v1/sessions")).body.sessions.length, 4);
    });

    await t.step(
      "limits.callsPerMinute: a token bucket, 429 with Retry-After past it",
      async () => {
        const answers = await Promise.all(
          Array.from({ length: 9 }, () => as(server, GLOBEX, "/", post("1"))),
        );
        // globex spent 1 call above (a 404 spends none); 6 a minute in all.
        const ok = answers.filter((r) => r.status === 200).length;
        assert.ok(ok >= 5 && ok <= 6, `${ok} calls passed`);
        const refused = answers.find((r) => r.status === 429)!;
        assert.match(refused.body.error.message, /limits\.callsPerMinute \(6\)/);
        assert.ok(Number(refused.headers.get("retry-after")) >= 1);
        assert.equal((await as(server, ACME, "/", post("1"))).status, 200, "acme is not held up");
      },
    );

    await t.step("audit lines and metrics carry the tenant; tokens are never logged", async () => {
      const calls = server.stdout.split("\n").filter((l) => l.includes('"event":"call"'));
      assert.ok(calls.some((l) => l.includes('"tenant":"acme"')));
      assert.ok(calls.some((l) => l.includes('"tenant":"globex"')));
      const metrics = await (await server.request("/metrics")).text();
      assert.match(metrics, /moat_tenant_calls_total\{tenant="acme",outcome="ok"\} [1-9]/);
      for (const token of [ACME, GLOBEX]) {
        assert.ok(!server.stdout.includes(token) && !server.stderr.includes(token));
      }
    });

    await t.step("a wrong token is 401; SIGHUP cuts a removed tenant off at once", async () => {
      assert.equal((await as(server, "nobody-0123456789abcdef", "/v1/sessions")).status, 401);
      await Deno.writeTextFile(
        file,
        `tenants:\n  - name: acme\n    token: "\${MOAT_TEST_ACME_TOKEN}"\n`,
      );
      server.kill("SIGHUP");
      for (let i = 0; i < 50 && !server.stderr.includes("tenants reloaded"); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(server.stderr, /tenants reloaded from .*: acme/);
      assert.equal((await as(server, GLOBEX, "/v1/sessions")).status, 401);
      assert.equal((await as(server, ACME, `/v1/sessions/${a}`, post("secret"))).body.result, 41);
      // A broken file keeps the list that works.
      await Deno.writeTextFile(file, "tenants: [{name: BAD}]\n");
      server.kill("SIGHUP");
      for (let i = 0; i < 50 && !server.stderr.includes("not reloaded"); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(server.stderr, /tenants not reloaded \(the previous list stays\)/);
      assert.equal((await as(server, ACME, "/v1/sessions")).status, 200);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a session stays its tenant's across a restart (ownership is in its checkpoint)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenants-store-" });
  const file = `${dir}/tenants.yaml`;
  await Deno.writeTextFile(file, tenantsFile());
  const env = {
    MOAT_TENANTS: file,
    MOAT_TEST_ACME_TOKEN: ACME,
    MOAT_STORE: `kv:${dir}/store.kv`,
  };
  try {
    let id: string;
    {
      await using server = await startServer({ env });
      id = (await as(server, ACME, "/v1/sessions", { method: "POST" })).body.id;
      const body = JSON.stringify({ code: "kept = 7", checkpoint: "sync" });
      assert.equal(
        (await as(server, ACME, `/v1/sessions/${id}`, { method: "POST", body })).status,
        200,
      );
      server.kill("SIGTERM");
      await server.exited();
    }
    await using again = await startServer({ env });
    assert.equal((await as(again, GLOBEX, `/v1/sessions/${id}`, post("kept"))).status, 404);
    const ids = (await as(again, GLOBEX, "/v1/sessions")).body.sessions.map(idOf);
    assert.ok(!ids.includes(id));
    const mine = await as(again, ACME, `/v1/sessions/${id}`, post("kept"));
    assert.equal(mine.body.result, 7);
    assert.equal(mine.body.restored, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a checkpoint record copied from one tenant's session onto another's is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenants-copy-" });
  const file = `${dir}/tenants.yaml`;
  await Deno.writeTextFile(file, tenantsFile());
  const env = { MOAT_TENANTS: file, MOAT_TEST_ACME_TOKEN: ACME, MOAT_STORE: `kv:${dir}/store.kv` };
  const sync = (code: string) => ({
    method: "POST",
    body: JSON.stringify({ code, checkpoint: "sync" }),
  });
  try {
    let a: string, b: string;
    {
      await using server = await startServer({ env });
      a = (await as(server, ACME, "/v1/sessions", { method: "POST" })).body.id;
      b = (await as(server, GLOBEX, "/v1/sessions", { method: "POST" })).body.id;
      assert.equal(
        (await as(server, ACME, `/v1/sessions/${a}`, sync("secret = 'acme'"))).status,
        200,
      );
      assert.equal((await as(server, GLOBEX, `/v1/sessions/${b}`, sync("mine = 1"))).status, 200);
      server.kill("SIGTERM");
      await server.exited();
    }
    // Another program with the store's file writes acme's records under globex's session.
    const kv = await Deno.openKv(`${dir}/store.kv`);
    const entries = async (id: string) => {
      const found: Deno.KvEntry<unknown>[] = [];
      for await (const e of kv.list({ prefix: [] })) if (e.key.includes(id)) found.push(e);
      return found;
    };
    for (const e of await entries(b)) await kv.delete(e.key);
    const copied = await entries(a);
    assert.ok(copied.length > 0, "the test found acme's records");
    for (const e of copied) await kv.set(e.key.map((part) => part === a ? b : part), e.value);
    kv.close();
    await using again = await startServer({ env });
    const stolen = await as(again, GLOBEX, `/v1/sessions/${b}`, post("secret"));
    assert.equal(stolen.status, 410, JSON.stringify(stolen.body));
    assert.doesNotMatch(JSON.stringify(stolen.body), /acme/);
    assert.match(again.stdout, /"kind":"checkpoint-rejected"/);
    // Nor did the copy make acme's session globex's, or globex's acme's.
    assert.equal((await as(again, GLOBEX, `/v1/sessions/${a}`, post("secret"))).status, 404);
    assert.equal((await as(again, ACME, `/v1/sessions/${a}`, post("secret"))).body.result, "acme");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a tenants file that cannot be used stops the start, naming the problem", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenants-bad-" });
  try {
    const cases: [string, string, RegExp][] = [
      [
        "a token written as is",
        `tenants:\n  - name: a\n    token: plain-token-0123456789\n`,
        /tenants\.0\.token.*never the token itself/,
      ],
      [
        "an unknown key",
        `tenants:\n  - name: a\n    token: "sha256:${sha("x")}"\n    quota: 1\n`,
        /unrecognized|quota/,
      ],
      [
        "a variable that is not set",
        `tenants:\n  - name: a\n    token: "\${MOAT_TEST_UNSET_TOKEN}"\n`,
        /tenant 'a': token names \$\{MOAT_TEST_UNSET_TOKEN\}, which is not set/,
      ],
      [
        "a name twice",
        `tenants:\n  - name: a\n    token: "sha256:${sha("x")}"\n  - name: a\n    token: "sha256:${
          sha("y")
        }"\n`,
        /'a' is named twice/,
      ],
      [
        "a policy that does not exist",
        `tenants:\n  - name: a\n    token: "sha256:${sha("x")}"\n    policy: nosuchpolicy\n`,
        /tenant 'a': .*nosuchpolicy\.yaml/,
      ],
    ];
    for (const [what, text, message] of cases) {
      await t.step(what, async () => {
        const file = `${dir}/${what.replaceAll(" ", "-")}.yaml`;
        await Deno.writeTextFile(file, text);
        await assert.rejects(
          startServer({ env: { MOAT_TENANTS: file, MOAT_STORE: "memory" } }),
          message,
        );
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
