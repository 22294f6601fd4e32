/**
 * Outbound HTTP (PROTOCOL.md §6): Python's ordinary clients (urllib, http.client, and the real
 * `requests` and `httpx` wheels from the pip index) reach the policy's hosts through the host,
 * which adds the configured headers (secrets Python never sees), keeps each entry's
 * `perMinute`, caps the response, and logs and counts every request. Loopback servers stand in
 * for the internet. Every rule is attacked here.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";
import { DirectoryServer, writeLockIndex, writeSimpleIndex } from "./helpers/wheels.ts";
import { httpWheels, writeWheelIndex } from "./helpers/pypi_wheels.ts";

const SECRET = "sk-test-0123456789-very-secret";

/** What the API server saw of one request. */
interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** The stand-in for a keyed API on the internet: it records what it received. */
function apiServer() {
  const seen: Seen[] = [];
  let hangs = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const body = await req.text();
    seen.push({
      method: req.method,
      path: url.pathname + url.search,
      headers: Object.fromEntries(req.headers),
      body,
    });
    switch (url.pathname) {
      case "/json":
        return Response.json({ ok: true, method: req.method, body, q: url.searchParams.get("q") });
      case "/echo-key": // an API whose error message repeats the key it was given
        return new Response(`invalid key: ${req.headers.get("authorization")}`, {
          status: 401,
          headers: { "x-echo": req.headers.get("authorization") ?? "" },
        });
      case "/big":
        return new Response(new Uint8Array(3 * 1024 * 1024).fill(120));
      case "/hang":
        hangs++;
        // Answers only once the host gives up (so the server can shut down afterwards).
        return new Promise<Response>((resolve) =>
          req.signal.addEventListener("abort", () => resolve(new Response("late")))
        );
      case "/inside":
        return Response.redirect(`http://${url.host}/json?q=redirected`, 302);
      case "/outside":
        return Response.redirect(`http://127.0.0.1:${other.addr.port}/`, 302);
      case "/gzip": {
        const stream = new Blob(["squeezed ".repeat(1000)]).stream()
          .pipeThrough(new CompressionStream("gzip"));
        return new Response(stream, { headers: { "content-encoding": "gzip" } });
      }
      case "/cookies": {
        const headers = new Headers();
        headers.append("set-cookie", "a=1");
        headers.append("set-cookie", "b=2");
        return new Response("two", { headers });
      }
      default:
        return new Response(`hello from ${url.pathname}`);
    }
  });
  const other = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    seen.push({ method: "?", path: "OTHER", headers: {}, body: "" });
    return new Response("must not be reached");
  });
  return {
    seen,
    host: `127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    otherPort: other.addr.port,
    hangs: () => hangs,
    async close() {
      await server.shutdown();
      await other.shutdown();
    },
  };
}

function policy(api: ReturnType<typeof apiServer>, index: string): string {
  return `limits:
  resultBytes: 1048576
  toolCallMs: 4000
  timeoutMs: 30000
packages:
  index: "${index}lock/"
  pypi: "${index}simple/"
network:
  allow:
    - host: "${api.host}"
      headers:
        Authorization: "Bearer \${MOAT_TEST_API_KEY}"
        X-Team: moat
    - host: "localhost:${api.port}"
      perMinute: 3
`;
}

/** The audit lines the server wrote for outbound requests. */
function outboundLines(server: TestServer): Record<string, unknown>[] {
  return server.stdout.split("\n").filter((l) => l.includes('"event":"outbound"')).map((l) =>
    JSON.parse(l)
  );
}

Deno.test("Python's HTTP clients reach allowed hosts through the host, and only them", async (t) => {
  const wheels = await httpWheels();
  if ("skip" in wheels) {
    console.log(`skipped: ${wheels.skip}`);
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "moat-outbound-" });
  const api = apiServer();
  try {
    await writeLockIndex(`${dir}/lock`, []);
    await writeWheelIndex(`${dir}/simple`, wheels.files);
    // requests needs charset-normalizer, which has no pure-Python wheel on the pip index; it
    // uses it only to guess the encoding of a response that names none.
    await writeSimpleIndex(`${dir}/simple`, [{
      name: "charset-normalizer",
      version: "3.4.0",
      files: {
        "charset_normalizer/__init__.py": "__version__ = '3.4.0'\n" +
          "def detect(data):\n    return {'encoding': 'utf-8', 'confidence': 1.0}\n",
      },
    }]);
    await using index = new DirectoryServer(dir);
    await using server = await startServer({
      policyText: policy(api, index.url),
      env: { MOAT_TEST_API_KEY: SECRET },
    });
    const base = `http://${api.host}`;
    const session = await server.createSession();
    const run = (code: string, packages: string[] = []) => server.exec(code, { session, packages });

    await t.step("urllib.request: GET and POST, with the configured headers added", async () => {
      const answer = await run(`
import json, urllib.request
get = json.load(urllib.request.urlopen("${base}/json?q=1"))
req = urllib.request.Request("${base}/json", data=b"payload", method="POST",
                             headers={"Authorization": "Bearer mine", "X-Team": "evil"})
post = json.load(urllib.request.urlopen(req, timeout=10))
[get, post]`);
      assert.equal(answer.error, null, answer.error?.message);
      assert.deepEqual(answer.result, [
        { ok: true, method: "GET", body: "", q: "1" },
        { ok: true, method: "POST", body: "payload", q: null },
      ]);
      const post = api.seen.findLast((s) => s.method === "POST")!;
      // Python's own Authorization and X-Team were replaced, not sent beside them.
      assert.equal(post.headers.authorization, `Bearer ${SECRET}`);
      assert.equal(post.headers["x-team"], "moat");
      assert.ok(answer.resources.network, "resources.network is there");
      assert.equal(answer.resources.network.requests, 2);
    });

    await t.step("http.client, plain and https-shaped, and chunked bodies", async () => {
      const answer = await run(`
import http.client, urllib.request
c = http.client.HTTPConnection("${api.host}", timeout=5)
c.request("PUT", "/json", body=iter([b"a", b"b", b"c"]), encode_chunked=True,
          headers={"Transfer-Encoding": "chunked"})
r = c.getresponse()
first = [r.status, r.read().decode()]
c.request("GET", "/plain")
second = c.getresponse().read().decode()
# https: the host makes the TLS connection (this plain-http server cannot answer it)
try:
    https = urllib.request.urlopen("https://${api.host}/json").status
except Exception as exc:
    https = str(exc)
[first, second, https]`);
      assert.equal(answer.error, null, answer.error?.message);
      assert.deepEqual(answer.result, [
        [200, JSON.stringify({ ok: true, method: "PUT", body: "abc", q: null })],
        "hello from /plain",
        answer.result[2],
      ]);
      assert.match(answer.result[2], new RegExp(`GET https://${api.host}`));
    });

    await t.step("requests (the real wheel): JSON, params, sessions, cookies", async () => {
      const answer = await run(
        `
import requests
r = requests.post("${base}/json", params={"q": "x y"}, json={"a": 1}, timeout=10)
s = requests.Session()
c = s.get("${base}/cookies")
[r.status_code, r.json()["q"], r.json()["body"], c.text, sorted(s.cookies.keys()),
 requests.get("${base}/gzip").text[:18]]`,
        ["requests"],
      );
      assert.equal(answer.error, null, answer.error?.message);
      assert.deepEqual(answer.result, [
        200,
        "x y",
        '{"a": 1}',
        "two",
        ["a", "b"],
        "squeezed squeezed ",
      ]);
    });

    await t.step("httpx (the real wheel): sync and async clients", async () => {
      const answer = await run(
        `
import httpx
sync = httpx.get("${base}/json", params={"q": "s"}).json()["q"]
async with httpx.AsyncClient() as client:
    r = await client.post("${base}/json", content=b"z")
[sync, r.status_code, r.json()["body"], httpx.get("${base}/inside").status_code,
 httpx.get("${base}/inside", follow_redirects=True).json()["q"]]`,
        ["httpx"],
      );
      assert.equal(answer.error, null, answer.error?.message);
      assert.deepEqual(answer.result, ["s", 200, "z", 302, "redirected"]);
    });

    await t.step(
      "a host not allowed raises an error naming network.allow, in every client",
      async () => {
        const other = `http://127.0.0.1:${api.otherPort}/`;
        const answer = await run(`
import urllib.request, requests, httpx, http.client
out = []
for attempt in (
    lambda: urllib.request.urlopen("${other}"),
    lambda: requests.get("${other}"),
    lambda: httpx.get("${other}"),
):
    try:
        attempt()
        out.append("reached")
    except Exception as exc:
        out.append("network.allow" in str(exc))
out`);
        assert.equal(answer.error, null, answer.error?.message);
        assert.deepEqual(answer.result, [true, true, true]);
        assert.ok(!api.seen.some((s) => s.path === "OTHER"), "the other host was never reached");
      },
    );

    await t.step(
      "host tricks: userinfo, decimal and IPv6 forms, trailing dot, other port",
      async () => {
        const tricks = [
          `http://${api.host}@127.0.0.1:${api.otherPort}/`,
          `http://2130706433:${api.otherPort}/`,
          `http://[::ffff:127.0.0.1]:${api.port}/json`,
          // A name with a trailing dot is another name (an address with one is the same address).
          `http://localhost.:${api.port}/json`,
          `http://127.0.0.1:${api.otherPort}/json`,
          `http://${api.host}.evil.test/`,
          `file:///etc/passwd`,
        ];
        const answer = await run(`
import urllib.request
out = []
for url in ${JSON.stringify(tricks)}:
    try:
        urllib.request.urlopen(url)
        out.append("reached " + url)
    except Exception as exc:
        out.append(type(exc).__name__)
out`);
        assert.equal(answer.error, null, answer.error?.message);
        for (const got of answer.result) assert.doesNotMatch(got, /^reached/, got);
        assert.ok(!api.seen.some((s) => s.path === "OTHER"));
      },
    );

    await t.step("CRLF in header names, values and URLs is refused", async () => {
      const answer = await run(
        `
import requests, http.client, moat
out = []
for attempt in (
    lambda: requests.get("${base}/json", headers={"X-A": "1\\r\\nAuthorization: stolen"}),
    lambda: requests.get("${base}/json", headers={"X-A\\r\\nB": "1"}),
    lambda: http.client.HTTPConnection("${api.host}").request("GET", "/json\\r\\nX-B: 1"),
):
    try:
        attempt()
        out.append("sent")
    except Exception as exc:
        out.append(type(exc).__name__)
try:
    await moat.fetch("${base}/json", headers={"X-A": "1\\r\\nInjected: 1"})
    out.append("sent")
except OSError as exc:
    out.append(str(exc))
out`,
        ["requests"],
      );
      assert.equal(answer.error, null, answer.error?.message);
      assert.ok(!answer.result.slice(0, 3).includes("sent"), JSON.stringify(answer.result));
      assert.match(answer.result[3], /line break/);
      assert.ok(!api.seen.some((s) => "injected" in s.headers || "b" in s.headers));
    });

    await t.step("a redirect to a host not allowed is not followed", async () => {
      const answer = await run(
        `
import requests, urllib.request
out = []
try:
    requests.get("${base}/outside")
    out.append("followed")
except requests.RequestException as exc:
    out.append("network.allow" in str(exc))
try:
    urllib.request.urlopen("${base}/outside")
    out.append("followed")
except Exception as exc:
    out.append("network.allow" in str(exc))
out.append(requests.get("${base}/inside").json()["q"])
out`,
        ["requests"],
      );
      assert.equal(answer.error, null, answer.error?.message);
      assert.deepEqual(answer.result, [true, true, "redirected"]);
      assert.ok(!api.seen.some((s) => s.path === "OTHER"));
    });

    await t.step("a response above limits.resultBytes is refused, naming the limit", async () => {
      const answer = await run(`
import urllib.request
try:
    urllib.request.urlopen("${base}/big")
except Exception as exc:
    msg = str(exc)
msg`);
      assert.match(answer.result, /limits\.resultBytes/);
    });

    await t.step(
      "an upstream that never answers: the request's timeout, then toolCallMs",
      async () => {
        const before = api.hangs();
        const answer = await run(
          `
import requests, time, urllib.request
out = []
t = time.monotonic()
try:
    requests.get("${base}/hang", timeout=0.5)
except requests.Timeout:
    out.append("timeout")
out.append(time.monotonic() - t < 3)
try:
    urllib.request.urlopen("${base}/hang")
except Exception as exc:
    out.append("limits.toolCallMs" in str(exc))
out`,
          ["requests"],
        );
        assert.equal(answer.error, null, answer.error?.message);
        assert.deepEqual(answer.result, ["timeout", true, true]);
        assert.equal(api.hangs() - before, 2);
      },
    );

    await t.step("the call's time limit holds over a request that hangs", async () => {
      const { body } = await server.post(`/v1/sessions/${session}`, {
        code: `import urllib.request\nurllib.request.urlopen("${base}/hang")`,
        timeoutMs: 1000,
      });
      assert.equal(body.resources.limit, "timeout");
      assert.equal((await run("1 + 1")).result, 2, "the session lives on");
    });

    await t.step("perMinute holds per session and host, across calls", async () => {
      const code = `
import urllib.request
out = []
for i in range(5):
    try:
        out.append(urllib.request.urlopen("http://localhost:${api.port}/json").status)
    except Exception as exc:
        out.append(str(exc))
out`;
      const first = await run(code);
      assert.deepEqual(first.result.slice(0, 3), [200, 200, 200]);
      assert.match(first.result[3], /perMinute \(3 requests per minute/);
      assert.deepEqual(first.resources.network.rateLimited, [`localhost:${api.port}`]);
      const again = await run(code);
      assert.match(again.result[0], /perMinute/, "the next call finds the window still full");
      const other = await server.exec(code, { session: await server.createSession() });
      assert.deepEqual(other.result.slice(0, 3), [200, 200, 200], "another session has its own");
      const limited = outboundLines(server).filter((l) => l.outcome === "rate-limited");
      assert.ok(limited.length >= 4);
      // Calls sent at once to one session: still 3 requests in the minute, all told.
      const busy = await server.createSession();
      const answers = await Promise.all([1, 2, 3].map(() => server.exec(code, { session: busy })));
      const sent = answers.flatMap((a) => a.result).filter((r) => r === 200);
      assert.equal(sent.length, 3);
    });

    await t.step(
      "the secret is nowhere in the sandbox, the answers, or the audit log",
      async () => {
        const answer = await run(
          `
import os, sys, gc, requests
r = requests.get("${base}/echo-key")
needle = "".join(reversed("${[...SECRET.slice(3, 12)].reverse().join("")}"))  # not in this code
found = [k for k, v in os.environ.items() if needle in v]
mods = [n for n, m in list(sys.modules.items()) if needle in repr(getattr(m, "__dict__", ""))]
[r.status_code, r.text, r.headers.get("x-echo"), found, mods]`,
          ["requests"],
        );
        assert.equal(answer.error, null, answer.error?.message);
        assert.deepEqual(answer.result.slice(3), [[], []]);
        assert.equal(answer.result[0], 401);
        assert.doesNotMatch(JSON.stringify(answer), new RegExp(SECRET));
        assert.match(answer.result[1], /\[header\]/, "the echoed key was scrubbed");
        assert.equal(
          api.seen.findLast((s) => s.path === "/echo-key")!.headers.authorization,
          `Bearer ${SECRET}`,
        );
        assert.doesNotMatch(server.stdout + server.stderr, new RegExp(SECRET));
      },
    );

    await t.step("one audit line per request, and the counter by host and outcome", async () => {
      const lines = outboundLines(server);
      assert.ok(lines.length > 20);
      for (const line of lines) {
        assert.ok(!("headers" in line) && !("body" in line));
        assert.equal(typeof line.method, "string");
      }
      assert.ok(lines.some((l) => l.outcome === "ok" && l.status === 200 && l.bytes));
      assert.ok(
        lines.some((l) => l.outcome === "refused" && l.host === `127.0.0.1:${api.otherPort}`),
      );
      const metrics = await (await server.request("/metrics")).text();
      assert.match(
        metrics,
        new RegExp(`moat_outbound_requests_total\\{host="${api.host}",outcome="ok"\\} [1-9]`),
      );
      assert.match(metrics, /moat_outbound_requests_total\{host="other",outcome="refused"\} [1-9]/);
      assert.match(metrics, /outcome="rate-limited"\} [1-9]/);
    });
  } finally {
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a session restored from its checkpoint still sends through the host", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-outbound-restore-" });
  const api = apiServer();
  const env = { MOAT_STORE: `kv:${dir}/store.kv`, MOAT_TEST_API_KEY: SECRET };
  const policyText = `network:\n  allow:\n    - host: "${api.host}"\n` +
    `      headers: { Authorization: "Bearer \${MOAT_TEST_API_KEY}" }\n`;
  const code = `import json, urllib.request, moat
get = lambda: json.load(urllib.request.urlopen("http://${api.host}/json?q=r"))["q"]
`;
  try {
    {
      await using server = await startServer({ policyText, env });
      const first = await server.exec(`${code}get()`, { sync: true });
      assert.equal(first.result, "r");
      server.kill("SIGTERM");
      await server.exited();
    }
    await using again = await startServer({ policyText, env });
    const answer = await again.exec(
      `[get(), (await moat.fetch("http://${api.host}/json")).json()["ok"]]`,
    );
    assert.equal(answer.error, null, answer.error?.message);
    assert.equal(answer.restored, true);
    assert.deepEqual(answer.result, ["r", true]);
    assert.equal(api.seen.at(-1)!.headers.authorization, `Bearer ${SECRET}`);
  } finally {
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a policy naming a variable that is not set stops the server, saying which", async () => {
  await assert.rejects(
    startServer({
      policyText:
        `network:\n  allow:\n    - host: api.example\n      headers: { X-Key: "\${MOAT_TEST_UNSET_KEY}" }\n`,
    }),
    /network\.allow 'api\.example': header 'X-Key' names \$\{MOAT_TEST_UNSET_KEY\}, which is not set/,
  );
});
