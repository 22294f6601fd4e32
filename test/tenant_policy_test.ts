/**
 * A tenant's own policy (`policy` in `MOAT_TENANTS`) applies to its sessions, and only to
 * them: limits (time, per-call maximum, files, packages per call, request bodies), mounts,
 * network hosts with their injected headers, and the limits MCP states. The operator's sessions
 * and other tenants' keep the server's policy. Its sessions are checkpointed against its own
 * pool's base and restore into its own pool, across restarts, again and again. A reload may not
 * change a tenant's policy; a policy that cannot be used stops the start naming the tenant.
 */
import assert from "node:assert/strict";
import { Client, StreamableHTTPClientTransport } from "./helpers/mcp.ts";
import { as } from "./helpers/principal.ts";
import { startServer, type TestServer } from "./helpers/server.ts";

const ACME = "acme-token-0123456789abcdef";
const INITECH = "initech-token-0123456789abcdef";
const SECRET = "acme-upstream-secret-42";

/** A loopback API that records the headers it was sent. */
function apiServer() {
  const seen: Record<string, string>[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    seen.push(Object.fromEntries(req.headers));
    return Response.json({ ok: true });
  });
  return { host: `127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

/** acme runs under `acme.yaml`; initech, with no `policy`, under the server's. */
async function setUp(dir: string, apiHost: string) {
  await Deno.mkdir(`${dir}/data`);
  await Deno.writeTextFile(`${dir}/data/hello.txt`, "acme's own data");
  await Deno.writeTextFile(
    `${dir}/acme.yaml`,
    `limits:
  timeoutMs: 1500
  maxTimeoutMs: 2000
  fileBytes: 1000
  bodyBytes: 65536
  poolSize: 1
packages:
  allow: ["*"]
  maxPerCall: 1
network:
  allow:
    - host: "${apiHost}"
      headers: { X-Team: "\${MOAT_TEST_ACME_SECRET}" }
mounts:
  - host: ${dir}/data
    at: /data
`,
  );
  const file = `${dir}/tenants.yaml`;
  await Deno.writeTextFile(
    file,
    `tenants:
  - name: acme
    token: "\${MOAT_TEST_ACME_TOKEN}"
    policy: ${dir}/acme.yaml
  - name: initech
    token: "\${MOAT_TEST_INITECH_TOKEN}"
`,
  );
  return {
    MOAT_TENANTS: file,
    MOAT_TEST_ACME_TOKEN: ACME,
    MOAT_TEST_INITECH_TOKEN: INITECH,
    MOAT_TEST_ACME_SECRET: SECRET,
  };
}

const post = (code: string, extra: Record<string, unknown> = {}) => ({
  method: "POST",
  body: JSON.stringify({ code, ...extra }),
});

const READ_MOUNT = `import os
open("/data/hello.txt").read() if os.path.exists("/data/hello.txt") else None`;

Deno.test("a tenant's own policy applies to its sessions, and only to them", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenant-policy-" });
  const api = apiServer();
  try {
    const env = await setUp(dir, api.host);
    await using server = await startServer({ env: { ...env, MOAT_STORE: "memory" } });
    const create = async (token?: string) =>
      (await as(server, token, "/v1/sessions", { method: "POST" })).body.id as string;
    const [acme, initech, operator] = [await create(ACME), await create(INITECH), await create()];
    const sessions = { acme, initech, operator };

    await t.step("mounts: its pool's interpreters have its files; the others do not", async () => {
      for (
        const [who, token, want] of [
          ["acme", ACME, "acme's own data"],
          ["initech", INITECH, null],
          ["operator", undefined, null],
        ] as const
      ) {
        const answer = await as(server, token, `/v1/sessions/${sessions[who]}`, post(READ_MOUNT));
        assert.equal(answer.body.error, null, JSON.stringify(answer.body));
        assert.equal(answer.body.result, want, who);
      }
    });

    await t.step(
      "time: its timeoutMs ends its loop; maxTimeoutMs bounds what it asks",
      async () => {
        const loop = await as(server, ACME, `/v1/sessions/${acme}`, post("while True: pass"));
        assert.equal(loop.body.error?.pythonExceptionType, "TimeoutError");
        assert.match(loop.body.error.message, /time limit of 1500 ms/);
        // The smolagents route refuses more than its maxTimeoutMs, naming it; the server allows it.
        const ask = post("1", { timeoutMs: 5000 });
        const refused = await as(server, ACME, "/", ask);
        assert.equal(refused.status, 400);
        assert.match(refused.body.error.message, /limits\.maxTimeoutMs: 2000/);
        assert.equal((await as(server, INITECH, "/", ask)).status, 200);
        assert.equal((await as(server, undefined, "/", ask)).status, 200);
        // The operator calling acme's session is bounded by acme's policy too.
        const operatorAsks = await as(server, undefined, `/v1/sessions/${acme}`, ask);
        assert.equal(operatorAsks.status, 400);
        const long = await as(server, undefined, `/v1/sessions/${acme}`, post("while True: pass"));
        assert.match(long.body.error.message, /time limit of 1500 ms/);
      },
    );

    await t.step("files, bodies and packages per call: its limits, named in the 4xx", async () => {
      const big = "x".repeat(2000);
      for (const token of [ACME, undefined]) {
        const put = await as(server, token, `/v1/sessions/${acme}/files/big.txt`, {
          method: "PUT",
          body: big,
        });
        assert.equal(put.status, 413);
        assert.match(put.body.error.message, /limits\.fileBytes is 1000/);
      }
      const theirs = await as(server, INITECH, `/v1/sessions/${initech}/files/big.txt`, {
        method: "PUT",
        body: big,
      });
      assert.equal(theirs.status, 201);
      const body = post(`"${"y".repeat(70_000)}"`);
      const tooBig = await as(server, ACME, `/v1/sessions/${acme}`, body);
      assert.equal(tooBig.status, 413);
      assert.match(tooBig.body.error.message, /limit of 65536 bytes/);
      assert.equal((await as(server, INITECH, `/v1/sessions/${initech}`, body)).status, 200);
      const two = post("1", { packages: ["a-pkg", "b-pkg"] });
      const many = await as(server, ACME, `/v1/sessions/${acme}`, two);
      assert.equal(many.status, 400);
      assert.match(many.body.error.message, /maxPerCall/);
    });

    await t.step(
      "network: its hosts, with its headers; the server's policy allows none",
      async () => {
        const get = `import urllib.request
urllib.request.urlopen("http://${api.host}/x").status`;
        const mine = await as(server, ACME, `/v1/sessions/${acme}`, post(get));
        assert.equal(mine.body.error, null, JSON.stringify(mine.body));
        assert.equal(mine.body.result, 200);
        assert.equal(api.seen.at(-1)!["x-team"], SECRET);
        const seen = api.seen.length;
        for (const [token, id] of [[INITECH, initech], [undefined, operator]] as const) {
          const refused = await as(server, token, `/v1/sessions/${id}`, post(get));
          assert.notEqual(refused.body.error, null);
          assert.doesNotMatch(JSON.stringify(refused.body), new RegExp(SECRET));
        }
        assert.equal(api.seen.length, seen, "nothing else reached the API");
      },
    );

    await t.step("MCP states its limits to its hosts", async () => {
      const describe = async (token: string) => {
        const client = new Client({ name: "moat-test", version: "1.0.0" });
        const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
          requestInit: { headers: { Authorization: `Bearer ${token}` } },
        });
        await client.connect(transport);
        try {
          return JSON.stringify((await client.listTools()).tools);
        } finally {
          await transport.terminateSession().catch(() => {});
          await client.close();
        }
      };
      assert.match(await describe(ACME), /run for 1\.5 s/);
      assert.doesNotMatch(await describe(INITECH), /run for 1\.5 s/);
    });

    await t.step("a reload may not change a tenant's policy; the old list stays", async () => {
      const file = env.MOAT_TENANTS;
      const before = await Deno.readTextFile(file);
      await Deno.writeTextFile(file, before.replace(/\n {4}policy: .*\n/, "\n"));
      server.kill("SIGHUP");
      for (let i = 0; i < 50 && !server.stderr.includes("not reloaded"); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(server.stderr, /tenant 'acme': its policy changes only at a restart/);
      const still = await as(server, ACME, `/v1/sessions/${acme}`, post(READ_MOUNT));
      assert.equal(still.body.result, "acme's own data");
    });
  } finally {
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a tenant's session checkpoints against its own base, restart after restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenant-policy-store-" });
  const api = apiServer();
  try {
    const env = { ...await setUp(dir, api.host), MOAT_STORE: `kv:${dir}/store.kv` };
    const call = async (server: TestServer, id: string, code: string) =>
      (await as(server, ACME, `/v1/sessions/${id}`, post(code, { checkpoint: "sync" }))).body;
    let id: string;
    {
      await using server = await startServer({ env });
      id = (await as(server, ACME, "/v1/sessions", { method: "POST" })).body.id;
      const first = await call(server, id, `kept = [1]\n${READ_MOUNT}`);
      assert.equal(first.result, "acme's own data");
      server.kill("SIGTERM");
      await server.exited();
    }
    {
      await using server = await startServer({ env });
      const second = await call(server, id, "kept.append(2); kept");
      assert.equal(second.error, null, JSON.stringify(second));
      assert.equal(second.restored, true);
      assert.deepEqual(second.result, [1, 2]);
      server.kill("SIGTERM");
      await server.exited();
    }
    await using server = await startServer({ env });
    const third = await call(
      server,
      id,
      `data = open("/data/hello.txt").read()
kept.append(3)
[kept, data]`,
    );
    assert.equal(third.error, null, JSON.stringify(third));
    assert.deepEqual(third.result, [[1, 2, 3], "acme's own data"]);
    // Still under acme's policy once restored.
    const loop = await call(server, id, "while True: pass");
    assert.match(loop.error.message, /time limit of 1500 ms/);
  } finally {
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a tenant policy that cannot be used stops the start, naming the tenant", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-tenant-policy-bad-" });
  try {
    const file = `${dir}/tenants.yaml`;
    const tenant = (policy: string) =>
      `tenants:\n  - name: acme\n    token: "\${MOAT_TEST_ACME_TOKEN}"\n    policy: ${policy}\n`;
    const env = { MOAT_TENANTS: file, MOAT_TEST_ACME_TOKEN: ACME, MOAT_STORE: "memory" };
    await Deno.writeTextFile(file, tenant(`${dir}/missing.yaml`));
    await assert.rejects(startServer({ env }), /tenant 'acme': .*missing\.yaml/);
    await Deno.writeTextFile(`${dir}/bad.yaml`, "limits:\n  timeoutMs: -1\n");
    await Deno.writeTextFile(file, tenant(`${dir}/bad.yaml`));
    await assert.rejects(startServer({ env }), /tenant 'acme': .*limits\.timeoutMs/);
    await Deno.writeTextFile(
      `${dir}/unset.yaml`,
      "network:\n  allow:\n    - host: api.example\n" +
        '      headers: { X-Key: "${MOAT_TEST_UNSET_KEY}" }\n',
    );
    await Deno.writeTextFile(file, tenant(`${dir}/unset.yaml`));
    await assert.rejects(startServer({ env }), /MOAT_TEST_UNSET_KEY/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
