/**
 * Calls go to the instance that runs the session (issue 19): three real instances on one real
 * Redis, each with MOAT_ADVERTISE_URL, behind a real nginx that spreads requests round-robin
 * with no affinity. Also the hop's trust: forged, replayed and misaddressed forwarding headers,
 * and an address written into Redis by something other than an instance.
 */
import assert from "node:assert/strict";
import { hopHeader } from "../src/cluster/hop.ts";
import { peerKeys } from "../src/cluster/keys.ts";
import { INITIALIZE } from "./helpers/mcp.ts";
import { stream } from "./helpers/sse.ts";
import { nginxUnavailable, startNginx } from "./helpers/nginx.ts";
import { freePort, redisUnavailable, startRedis, type TestRedis } from "./helpers/redis.ts";
import { type Cluster, startServers, type TestServer } from "./helpers/server.ts";

const skip = await redisUnavailable() ?? await nginxUnavailable();
if (skip) console.warn(`skipping the forwarding tests: ${skip}`);

const TOKEN = "forward-test-token-0123456789";
const STORE_KEY = "forward-test-store-key-0123456789";
const POLICY = "limits:\n  poolSize: 1\n";

/** Instances on one Redis prefix, each on a port of its own that it advertises. */
async function startInstances(
  redis: TestRedis,
  ids: string[],
  advertise = true,
  extra: Record<string, string> = {},
): Promise<Cluster> {
  const prefix = `moat-fwd-${crypto.randomUUID().slice(0, 8)}`;
  return await startServers(ids.map((id) => {
    const port = freePort();
    return {
      policyText: POLICY,
      env: {
        MOAT_STORE: redis.url,
        MOAT_STORE_KEY: STORE_KEY,
        MOAT_STORE_PREFIX: prefix,
        MOAT_TOKEN: TOKEN,
        MOAT_INSTANCE_ID: id,
        MOAT_PORT: String(port),
        ...(advertise ? { MOAT_ADVERTISE_URL: `http://127.0.0.1:${port}` } : {}),
        ...extra,
      },
    };
  }));
}

const hostOf = (s: TestServer) => s.url.replace("http://", "");

/** A client of the balancer, as an agent framework would be. */
function client(base: string) {
  const request = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${TOKEN}`);
    return fetch(`${base}${path}`, { ...init, headers });
  };
  // deno-lint-ignore no-explicit-any
  const post = async (path: string, body: unknown): Promise<{ status: number; body: any }> => {
    const res = await request(path, { method: "POST", body: JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const exec = async (session: string | undefined, code: string, extra = {}) => {
    const { status, body } = await post(session ? `/v1/sessions/${session}` : "/", {
      code,
      ...extra,
    });
    assert.equal(status, 200, `${code}: HTTP ${status} ${JSON.stringify(body)}`);
    assert.equal(body.error, null, `${code}: ${JSON.stringify(body.error)}`);
    return body;
  };
  return { request, post, exec };
}

/** The instance the store says runs `session` (from its details, asked anywhere). */
async function ownerOf(server: TestServer, session: string): Promise<string> {
  const res = await server.request(`/v1/sessions/${session}`);
  assert.equal(res.status, 200);
  return (await res.json()).instance;
}

Deno.test({
  name: "agents through a round-robin balancer see their state on every call, at one instance",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startInstances(redis, ["fw-a", "fw-b", "fw-c"]);
    await using lb = await startNginx(cluster.servers.map(hostOf));
    const c = client(lb.url);
    const created = await c.post("/v1/sessions", {});
    assert.equal(created.status, 201);
    const id = created.body.id;
    await c.exec(id, "n = 0");
    const served = new Set<string>();
    for (let i = 1; i <= 12; i++) {
      const body = await c.exec(id, "n += 1\nn");
      assert.equal(body.result, i, "every call sees the previous one's state");
      assert.notEqual(body.restored, true, "the session never moved");
    }
    // The default session at `/` (smolagents' WasmExecutor) is one session for the deployment.
    await c.exec(undefined, "total = 0");
    for (let i = 1; i <= 6; i++) {
      assert.equal((await c.exec(undefined, "total += 2\ntotal")).result, 2 * i);
    }
    // Session details agree wherever they are asked.
    for (const server of cluster.servers) {
      const res = await server.request(`/v1/sessions/${id}`);
      const info = await res.json();
      served.add(info.instance);
      assert.equal(info.state, "live");
      if (res.headers.get("moat-instance")) served.add(res.headers.get("moat-instance")!);
    }
    assert.equal(served.size, 1, `one instance runs it, all say so: ${[...served]}`);
    // A host tool's call and its answer each reach some instance; both end up at the owner.
    const tool = { name: "double", description: "Doubles n.", parameters: {} };
    let result: { result: number[]; error: unknown } | undefined;
    const code = "[double(n=i) for i in range(6)] + [n]";
    for await (const event of stream(c, `/v1/sessions/${id}`, { code, tools: [tool] })) {
      if (event.event === "result") result = JSON.parse(event.data);
      if (event.event !== "tool_call") continue;
      const call = JSON.parse(event.data);
      const res = await c.post(`/v1/sessions/${id}/tool-results`, {
        id: call.id,
        result: call.arguments.n * 2,
      });
      assert.equal(res.status, 204, JSON.stringify(res.body));
    }
    assert.equal(result?.error, null, JSON.stringify(result));
    assert.deepEqual(result?.result, [0, 2, 4, 6, 8, 10, 12]);
    const metrics = await Promise.all(
      cluster.servers.map((s) => s.request("/metrics").then((r) => r.text())),
    );
    const forwarded = metrics.map((m) =>
      Number(m.match(/moat_forwards_total\{outcome="forwarded"\} (\d+)/)?.[1] ?? 0)
    );
    assert.ok(forwarded.reduce((a, b) => a + b) >= 8, `calls were forwarded: ${forwarded}`);
  },
});

Deno.test({
  name: "8 sessions hammered through the balancer: every answer is the previous plus one",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startInstances(redis, ["fh-a", "fh-b", "fh-c"]);
    await using lb = await startNginx(cluster.servers.map(hostOf));
    const c = client(lb.url);
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push((await c.post("/v1/sessions", {})).body.id);
    await Promise.all(ids.map(async (id) => {
      await c.exec(id, "n = 0");
      for (let i = 1; i <= 25; i++) {
        assert.equal((await c.exec(id, "n += 1\nn")).result, i, `session ${id}, call ${i}`);
      }
    }));
  },
});

Deno.test({
  name:
    "kill -9 of the instance running a session: calls through the balancer go on from its checkpoint",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startInstances(redis, ["fk-a", "fk-b", "fk-c"]);
    await using lb = await startNginx(cluster.servers.map(hostOf));
    const c = client(lb.url);
    const id = (await c.post("/v1/sessions", {})).body.id;
    await c.exec(id, "n = 41", { checkpoint: "sync" });
    const owner = await ownerOf(cluster.servers[0], id);
    const victim = cluster.servers.find((s) => s.stderr.includes(`instance ${owner})`))!;
    assert.ok(victim, `the owner ${owner} is one of the three`);
    victim.kill("SIGKILL");
    await victim.exited();
    const t = performance.now();
    const body = await c.exec(id, "n += 1\nn", { timeoutMs: 20_000 });
    const took = performance.now() - t;
    assert.equal(body.result, 42, "the state of the last checkpoint, plus this call");
    assert.equal(body.restored, true);
    console.log(`  failover after kill -9: ${Math.round(took)} ms`);
    assert.ok(took < 10_000, `went on within seconds (${Math.round(took)} ms)`);
    assert.equal((await c.exec(id, "n += 1\nn")).result, 43);
  },
});

Deno.test({
  name: "SSE streams, files and MCP pass through a forwarded hop",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startInstances(redis, ["fs-a", "fs-b"]);
    const [a, b] = cluster.servers;
    const id = await a.createSession();
    await a.exec("x = 7", { session: id });
    // Asked of B, which does not run it: passed to A.
    const stream = await b.request(`/v1/sessions/${id}`, {
      method: "POST",
      headers: { accept: "text/event-stream" },
      body: JSON.stringify({
        code: "import time\nfor i in range(3):\n  print(i)\n  time.sleep(0.05)\nx",
      }),
    });
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get("moat-instance"), "fs-a");
    assert.match(stream.headers.get("content-type") ?? "", /text\/event-stream/);
    const text = await stream.text();
    assert.match(text, /event: stdout\ndata: "0\\n"/);
    assert.match(text, /event: result\ndata: .*"result":7/);

    const put = await b.request(`/v1/sessions/${id}/files/data/in.txt`, {
      method: "PUT",
      body: "hello from B",
    });
    assert.equal(put.status, 201, await put.text());
    assert.equal(put.headers.get("moat-instance"), "fs-a");
    const read = await a.exec("open('data/in.txt').read()", { session: id });
    assert.equal(read.result, "hello from B");
    const got = await b.request(`/v1/sessions/${id}/files/data/in.txt`);
    assert.equal(await got.text(), "hello from B");

    // MCP: the session begun on A is reached through B.
    const mcp = (server: TestServer, body: unknown, sid?: string) =>
      server.request("/mcp", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          ...(sid ? { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" } : {}),
        },
        body: JSON.stringify(body),
      });
    const init = await mcp(a, { jsonrpc: "2.0", id: 1, ...INITIALIZE });
    assert.equal(init.status, 200);
    const sid = init.headers.get("mcp-session-id")!;
    await init.text();
    assert.ok(sid.startsWith("fs-a~"), `the MCP session id names its instance: ${sid}`);
    (await mcp(b, { jsonrpc: "2.0", method: "notifications/initialized" }, sid)).body?.cancel();
    const called = await mcp(b, {
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "run_python_code", arguments: { python_code: "print(6 * 7)" } },
    }, sid);
    assert.equal(called.status, 200);
    assert.match(await called.text(), /42/);
  },
});

Deno.test({
  name: "a forwarding header from a client is refused: forged, replayed, misaddressed",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startInstances(redis, ["ft-a", "ft-b"]);
    const [a] = cluster.servers;
    const id = await a.createSession();
    const path = `/v1/sessions/${id}`;
    const send = (hop: string, auth = false) =>
      fetch(`${a.url}${path}`, {
        method: "POST",
        headers: { "moat-hop": hop, ...(auth ? { authorization: `Bearer ${TOKEN}` } : {}) },
        body: JSON.stringify({ code: "1 + 1" }),
      });
    const refused = async (res: Response, why: RegExp) => {
      assert.equal(res.status, 401);
      const body = await res.json();
      assert.equal(body.error.name, "Unauthorized");
      assert.match(body.error.message, why);
    };
    // Made up, or signed with another key: refused even with the right bearer token.
    await refused(await send(`v1 ft-b ft-a ${Date.now()} 00ff abc`, true), /bad signature/);
    const wrongKeys = await peerKeys("another-store-key-0123456789");
    await refused(
      await send(hopHeader(wrongKeys.hops, "ft-b", "ft-a", "POST", path)),
      /bad signature/,
    );
    await refused(await send("yes"), /malformed/);
    // Signed right (only instances hold the key): accepted once, never again.
    const keys = await peerKeys(STORE_KEY);
    const header = hopHeader(keys.hops, "ft-b", "ft-a", "POST", path);
    const first = await send(header);
    assert.equal(first.status, 200);
    assert.equal((await first.json()).result, 2);
    await refused(await send(header), /replayed/);
    // Signed for another instance, or another path.
    await refused(
      await send(hopHeader(keys.hops, "ft-a", "ft-b", "POST", path)),
      /addressed to instance 'ft-b'/,
    );
    await refused(
      await send(hopHeader(keys.hops, "ft-b", "ft-a", "POST", "/v1/sessions/other")),
      /bad signature/,
    );
    assert.match(a.stdout, /"kind":"hop-refused"/);
  },
});

Deno.test({
  name: "an address written into Redis by something other than an instance is never followed",
  ignore: skip !== undefined,
  async fn() {
    await using redis = await startRedis();
    await using cluster = await startInstances(redis, ["fr-a", "fr-b"]);
    const [a, b] = cluster.servers;
    const prefix = a.options.env!.MOAT_STORE_PREFIX;
    // A listener that would receive whatever is sent its way.
    let trapped = 0;
    const trap = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      trapped++;
      return new Response("{}");
    });
    const trapUrl = `http://127.0.0.1:${trap.addr.port}`;
    try {
      const id = await a.createSession();
      await a.exec("secret = 'kept'", { session: id, sync: true });
      // With write access to Redis alone: a record of A pointing at the trap, and a lease of
      // the session naming an instance that does not exist, with a record of its own.
      const forged = btoa(JSON.stringify({ id: "fr-a", url: trapUrl, pid: 1, started: 0 }));
      const evil = btoa(JSON.stringify({ id: "evil", url: trapUrl, pid: 1, started: 0 }));
      await redisCli(redis, "SET", `${prefix}:instance:evil`, `${evil}.AAAA`, "PX", "60000");
      await redisCli(redis, "SET", `${prefix}:lease:${id}`, "evil", "PX", "60000");
      const other = await b.createSession();
      await redisCli(redis, "SET", `${prefix}:instance:fr-a`, `${forged}.AAAA`, "PX", "60000");
      await redisCli(redis, "SET", `${prefix}:lease:${other}`, "fr-a", "PX", "60000");
      const answer = await b.exec("secret", { session: id, timeoutMs: 20_000 });
      assert.equal(answer.result, "kept", "served from the checkpoint, not by the trap");
      const second = await b.exec("1", { session: other, timeoutMs: 20_000 });
      assert.equal(second.result, 1);
      assert.equal(trapped, 0, "nothing reached the address in the forged records");
    } finally {
      await trap.shutdown();
    }
  },
});

/** Runs one command with redis-cli against the test's Redis (as any client of it could). */
async function redisCli(redis: TestRedis, ...args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("redis-cli", {
    args: ["-u", redis.url, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.equal(code, 0, out);
  return out.trim();
}

Deno.test({
  name:
    "two servers on one KV file: the second says so at start-up, and forwards when both advertise",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "moat-two-" });
    try {
      const kv = `kv:${dir}/store.kv`;
      const env = (id: string, port?: number) => ({
        MOAT_STORE: kv,
        MOAT_TOKEN: TOKEN,
        MOAT_INSTANCE_ID: id,
        ...(port
          ? { MOAT_PORT: String(port), MOAT_ADVERTISE_URL: `http://127.0.0.1:${port}` }
          : {}),
      });
      {
        await using first = await startServers([{ policyText: POLICY, env: env("kv-one") }]);
        await using second = await startServers([{ policyText: POLICY, env: env("kv-two") }]);
        const line = second.servers[0].stderr.split("\n").find((l) => l.includes("warning:"));
        assert.ok(line, `a warning at start-up:\n${second.servers[0].stderr}`);
        assert.match(line, /kv-one \(pid \d+\) already uses/);
        assert.match(line, /MOAT_STORE=memory/);
        assert.match(line, /MOAT_STORE=kv:PATH/);
        assert.ok(first.servers[0]);
      }
      const [p1, p2] = [freePort(), freePort()];
      await using first = await startServers([{ policyText: POLICY, env: env("kv-three", p1) }]);
      await using second = await startServers([{ policyText: POLICY, env: env("kv-four", p2) }]);
      assert.doesNotMatch(second.servers[0].stderr, /warning:/);
      assert.match(second.servers[0].stderr, /forwarded to them/);
      const [one, two] = [first.servers[0], second.servers[0]];
      await one.exec("y = 5");
      const res = await two.request("/", { method: "POST", body: JSON.stringify({ code: "y" }) });
      assert.equal(res.headers.get("moat-instance"), "kv-three");
      assert.equal((await res.json()).result, 5);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "a forwarded request keeps its tenant: the owner's token reaches, another's is 404",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "moat-fwd-tenants-" });
    const file = `${dir}/tenants.yaml`;
    const tokens = {
      acme: "acme-forward-token-0123456789",
      globex: "globex-forward-token-0123456",
    };
    await Deno.writeTextFile(
      file,
      "tenants:\n" +
        Object.keys(tokens).map((n) =>
          `  - name: ${n}\n    token: "\${MOAT_TEST_${n.toUpperCase()}_TOKEN}"\n`
        ).join(""),
    );
    try {
      await using redis = await startRedis();
      await using cluster = await startInstances(redis, ["ft-ta", "ft-tb"], true, {
        MOAT_TENANTS: file,
        MOAT_TEST_ACME_TOKEN: tokens.acme,
        MOAT_TEST_GLOBEX_TOKEN: tokens.globex,
      });
      const [a, b] = cluster.servers;
      const as = (server: TestServer, token: string, path: string, init: RequestInit = {}) =>
        fetch(`${server.url}${path}`, {
          ...init,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        });
      const created = await (await as(a, tokens.acme, "/v1/sessions", { method: "POST" })).json();
      const run = (code: string) => ({ method: "POST", body: JSON.stringify({ code }) });
      await (await as(a, tokens.acme, `/v1/sessions/${created.id}`, run("x = 5"))).text();
      // Asked of B, which does not run it: passed to A with the tenant, and checked there.
      const mine = await as(b, tokens.acme, `/v1/sessions/${created.id}`, run("x"));
      assert.equal(mine.headers.get("moat-instance"), "ft-ta");
      assert.equal((await mine.json()).result, 5);
      const theirs = await as(b, tokens.globex, `/v1/sessions/${created.id}`, run("x"));
      assert.equal(theirs.status, 404);
      await theirs.body?.cancel();
      // Each tenant's default session, wherever it runs, is its own.
      await (await as(a, tokens.acme, "/", run("d = 'acme'"))).text();
      const other = await (await as(b, tokens.globex, "/", run("d"))).json();
      assert.equal(other.error.pythonExceptionType, "NameError");
      const again = await (await as(b, tokens.acme, "/", run("d"))).json();
      assert.equal(again.result, "acme");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
