import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";

const QUIET = "packages:\n  preload: []\n";

async function getJson(server: TestServer, path: string) {
  const res = await server.request(path, { headers: { accept: "application/json" } });
  return { status: res.status, body: await res.json() };
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 20_000) {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("the session API creates, describes, lists, resets and deletes sessions", async (t) => {
  await using server = await startServer({ policyText: QUIET });

  await t.step("the default session exists from start-up and answers at / too", async () => {
    assert.equal((await server.request("/")).status, 200);
    const { status, body } = await getJson(server, "/v1/sessions/default");
    assert.equal(status, 200);
    assert.equal(body.id, "default");
    assert.equal(body.mode, "persistent");
  });

  let id = "";
  await t.step("POST /v1/sessions answers 201 with an unguessable id", async () => {
    const a = await server.post("/v1/sessions", { mode: "persistent" });
    const b = await server.post("/v1/sessions", {});
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    assert.match(a.body.id, uuid); // 122 random bits
    assert.notEqual(a.body.id, b.body.id);
    assert.equal(b.body.mode, "persistent");
    id = a.body.id;
  });

  await t.step("a body-less POST /v1/sessions makes a persistent session", async () => {
    const res = await server.request("/v1/sessions", { method: "POST" });
    assert.equal(res.status, 201);
    assert.equal((await res.json()).mode, "persistent");
  });

  await t.step("a bad mode gets 400 naming the field", async () => {
    const res = await server.post("/v1/sessions", { mode: "forever" });
    assert.equal(res.status, 400);
    assert.match(res.body.error.message, /Field 'mode'/);
  });

  await t.step("GET /v1/sessions/{id} gives the details as JSON", async () => {
    await server.exec("import json\nx = 1", { session: id });
    await server.exec("x + 1", { session: id });
    const { status, body } = await getJson(server, `/v1/sessions/${id}`);
    assert.equal(status, 200);
    assert.equal(body.id, id);
    assert.equal(body.mode, "persistent");
    assert.equal(body.calls, 2);
    assert.ok(Date.parse(body.created) <= Date.parse(body.lastUsed));
    assert.ok(Date.parse(body.expires) > Date.now());
    assert.ok(body.memoryBytes > 1024 * 1024, `memoryBytes ${body.memoryBytes}`);
    assert.deepEqual(body.packages, []);
    assert.equal(body.busy, false);
    assert.equal(body.queued, 0);
  });

  await t.step("GET /v1/sessions lists every session", async () => {
    const { body } = await getJson(server, "/v1/sessions");
    const ids = body.sessions.map((s: { id: string }) => s.id);
    assert.ok(ids.includes("default") && ids.includes(id));
  });

  await t.step("reset gives the session a clean interpreter and keeps its id", async () => {
    const res = await server.post(`/v1/sessions/${id}/reset`, {});
    assert.equal(res.status, 200);
    assert.equal(res.body.id, id);
    const answer = await server.exec("x", { session: id });
    assert.equal(answer.error?.pythonExceptionType, "NameError");
  });

  await t.step("DELETE removes the session; later calls get 404", async () => {
    const res = await server.request(`/v1/sessions/${id}`, { method: "DELETE" });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    for (const [method, path] of [["GET", ""], ["POST", ""], ["POST", "/reset"], ["DELETE", ""]]) {
      const gone = await server.request(`/v1/sessions/${id}${path}`, {
        method,
        body: method === "POST" ? JSON.stringify({ code: "1" }) : undefined,
      });
      assert.equal(gone.status, 404, `${method} ${path}`);
      assert.equal((await gone.json()).error.name, "SessionNotFound");
    }
  });

  await t.step("an unknown id gets 404, also when it looks like a real one", async () => {
    const res = await server.post(`/v1/sessions/${crypto.randomUUID()}`, { code: "1" });
    assert.equal(res.status, 404);
  });
});

Deno.test("sessions are isolated from one another", async (t) => {
  await using server = await startServer({ policyText: QUIET });
  const a = await server.createSession();
  const b = await server.createSession();

  await t.step("a variable set in one session is not visible in another", async () => {
    await server.exec("secret = 'only in a'", { session: a });
    const answer = await server.exec("secret", { session: b });
    assert.equal(answer.error?.pythonExceptionType, "NameError");
    assert.equal((await server.exec("secret", { session: a })).result, "only in a");
    assert.equal((await server.exec("'secret' in globals()")).result, false); // nor at /
  });

  await t.step("modules patched in one session are untouched in another", async () => {
    await server.exec("import math\nmath.pi = 3", { session: a });
    assert.equal((await server.exec("import math\nmath.pi > 3.1", { session: b })).result, true);
  });

  await t.step("files written in one session do not appear in another", async () => {
    await server.exec("open('/tmp/a.txt', 'w').write('a')", { session: a });
    const answer = await server.exec("import os\nos.path.exists('/tmp/a.txt')", { session: b });
    assert.equal(answer.result, false);
  });
});

Deno.test("calls to one session run one at a time, in arrival order", async (t) => {
  await using server = await startServer({
    policyText: "limits:\n  queuedCalls: 3\n" + QUIET,
  });
  const id = await server.createSession();
  await server.exec("log = []", { session: id });

  await t.step("concurrent calls do not interleave", async () => {
    const calls = [0, 1, 2, 3].map((n) =>
      server.exec(
        `import time\nlog.append(('start', ${n}))\ntime.sleep(0.1)\nlog.append(('end', ${n}))\n${n}`,
        { session: id },
      )
    );
    assert.deepEqual((await Promise.all(calls)).map((a) => a.result), [0, 1, 2, 3]);
    const log: [string, number][] = (await server.exec("log", { session: id })).result;
    assert.equal(log.length, 8);
    for (let i = 0; i < 8; i += 2) {
      assert.deepEqual([log[i][0], log[i + 1][0]], ["start", "end"]);
      assert.equal(log[i][1], log[i + 1][1], `call ${log[i][1]} ran alone: ${JSON.stringify(log)}`);
    }
  });

  await t.step("queued calls run in the order they arrived", async () => {
    await server.exec("order = []", { session: id });
    const first = server.exec("import time\ntime.sleep(0.5)\norder.append(0)", { session: id });
    const rest: Promise<unknown>[] = [];
    for (const n of [1, 2, 3]) {
      await new Promise((r) => setTimeout(r, 50)); // each arrives after the previous one
      rest.push(server.exec(`order.append(${n})`, { session: id }));
    }
    await Promise.all([first, ...rest]);
    assert.deepEqual((await server.exec("order", { session: id })).result, [0, 1, 2, 3]);
  });

  await t.step("too many waiting calls get 429 with a clear message", async () => {
    const running = server.exec("import time\ntime.sleep(1)", { session: id });
    await new Promise((r) => setTimeout(r, 200));
    const queued = [1, 2, 3].map(() => server.exec("1", { session: id }));
    const extra = await server.post(`/v1/sessions/${id}`, { code: "1" });
    assert.equal(extra.status, 429);
    assert.equal(extra.body.error.name, "TooManyRequests");
    assert.match(extra.body.error.message, /calls waiting/);
    await running;
    for (const answer of await Promise.all(queued)) assert.equal(answer.result, 1);
  });

  await t.step("calls to different sessions run side by side", async () => {
    const other = await server.createSession();
    let slowDone = false;
    const slow = server.exec("import time\ntime.sleep(2)\n'slow'", { session: id })
      .finally(() => slowDone = true);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await server.exec("'quick'", { session: other })).result, "quick");
    assert.equal(slowDone, false, "the other session answered while the first still ran");
    assert.equal((await slow).result, "slow");
  });
});

Deno.test("ephemeral sessions start every call from a clean interpreter", async () => {
  await using server = await startServer({ policyText: QUIET });
  const { status, body } = await server.post("/v1/sessions", { mode: "ephemeral" });
  assert.equal(status, 201);
  assert.equal(body.mode, "ephemeral");
  assert.equal((await server.exec("x = 5\nx * 2", { session: body.id })).result, 10);
  const answer = await server.exec("x", { session: body.id });
  assert.equal(answer.error?.pythonExceptionType, "NameError");
  assert.doesNotMatch(answer.error!.message, /replaced/); // nothing was lost: nothing was kept
  const info = await getJson(server, `/v1/sessions/${body.id}`);
  assert.equal(info.body.calls, 2);
});

Deno.test("idle sessions expire after the policy's TTL", async (t) => {
  await using server = await startServer({ policyText: "limits:\n  idleTtlSeconds: 1\n" + QUIET });

  await t.step("an idle session is gone after its TTL; the default session stays", async () => {
    const id = await server.createSession();
    assert.equal((await server.exec("1", { session: id })).result, 1);
    await waitFor("the session to expire", async () => {
      const res = await server.request(`/v1/sessions/${id}`);
      await res.body?.cancel();
      return res.status === 404;
    });
    assert.equal((await server.exec("'default lives'")).result, "default lives");
  });

  await t.step("a session in use does not expire", async () => {
    const id = await server.createSession();
    const answer = await server.exec("import time\ntime.sleep(2.5)\n'still mine'", { session: id });
    assert.equal(answer.result, "still mine");
    assert.equal((await server.exec("2", { session: id })).result, 2);
  });
});

Deno.test("without a durable store, the number of sessions is capped by the policy", async () => {
  await using server = await startServer({
    policyText: "limits:\n  sessions: 3\n" + QUIET,
    env: { MOAT_STORE: "memory" },
  });
  const ids = [await server.createSession(), await server.createSession()]; // + default = 3
  const full = await server.post("/v1/sessions", {});
  assert.equal(full.status, 429);
  assert.equal(full.body.error.name, "TooManyRequests");
  assert.match(full.body.error.message, /maximum of 3 sessions/);
  const res = await server.request(`/v1/sessions/${ids[0]}`, { method: "DELETE" });
  await res.body?.cancel();
  assert.equal((await server.post("/v1/sessions", {})).status, 201);
});

Deno.test("at the cap of live interpreters the least recently used idle session hibernates; 429 only when all are busy", async () => {
  await using server = await startServer({ policyText: "limits:\n  sessions: 2\n" + QUIET });
  const first = await server.createSession();
  await server.exec("mine = 'first'", { session: first });
  const second = await server.createSession();
  await server.exec("mine = 'second'", { session: second });
  const state = async (id: string) =>
    (await (await server.request(`/v1/sessions/${id}`)).json()).state;
  const third = await server.createSession(); // room is made by hibernating `first`
  assert.equal(await state(first), "hibernated");
  assert.equal(await state(second), "live");
  // Both live interpreters busy: nothing can hibernate, so a new session is refused.
  const busy = [second, third].map((id) =>
    server.post(`/v1/sessions/${id}`, { code: "import time\ntime.sleep(2)" })
  );
  await waitFor(
    "both calls to run",
    async () =>
      (await Promise.all(
        [second, third].map(async (id) =>
          (await (await server.request(`/v1/sessions/${id}`)).json()).busy
        ),
      )).every(Boolean),
  );
  const full = await server.post("/v1/sessions", {});
  assert.equal(full.status, 429);
  assert.match(full.body.error.message, /maximum of 2 sessions with every one busy/);
  await Promise.all(busy);
  // The hibernated session comes back with its state (and makes room in turn).
  const back = await server.exec("mine", { session: first });
  assert.equal(back.result, "first");
  assert.equal(back.restored, true);
});

Deno.test("the pool refills in the background after sessions take interpreters", async () => {
  await using server = await startServer({ policyText: "limits:\n  poolSize: 2\n" + QUIET });
  const health = async () => (await (await server.request("/health", { auth: false })).json());
  assert.equal((await health()).poolReady, 2);
  for (let i = 0; i < 3; i++) await server.createSession();
  await waitFor("the pool to refill", async () => (await health()).poolReady === 2);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} lets the running call finish, refuses new work, and exits 0`, async () => {
    await using server = await startServer({ policyText: QUIET });
    const id = await server.createSession();
    const running = server.exec("import time\ntime.sleep(1.5)\n'finished'", { session: id });
    await waitFor(
      "the call to start",
      async () => (await getJson(server, `/v1/sessions/${id}`)).body.busy,
    );
    server.kill(signal);
    await new Promise((r) => setTimeout(r, 200));
    const refused = await server.post("/", { code: "1" }).catch(() => null);
    if (refused) assert.equal(refused.status, 503); // or the connection was already closed
    assert.equal((await running).result, "finished");
    const status = await server.exited();
    assert.equal(status.code, 0);
    assert.match(server.stderr, new RegExp(`${signal}: finishing running calls`));
    assert.match(server.stderr, /stopped/);
  });
}
