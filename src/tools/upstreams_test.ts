/**
 * The host's client of upstream MCP servers (`upstreams.ts`), against a real MCP server on
 * loopback: the SDK's `McpServer` over its web-standard Streamable HTTP transport.
 */
import assert from "node:assert/strict";
// @ts-types="@modelcontextprotocol/sdk/server/mcp"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { WebStandardStreamableHTTPServerTransport } from "../mcp/sdk.ts";
import type { McpServer as McpServerEntry } from "../policy/schema.ts";
import { envNames, upstreamHosts, Upstreams } from "./upstreams.ts";

const SECRET = "upstream-unit-secret-4b9d2e";

type Register = (server: McpServer) => void;

/** Every tool the test server starts with; each session's `McpServer` registers all of them. */
const TOOLS: Register[] = [
  (s) =>
    s.registerTool("echo", {
      description: "Returns n.",
      inputSchema: { n: z.number().int() },
    }, ({ n }) => ({
      structuredContent: { n },
      content: [{ type: "text", text: JSON.stringify({ n }) }],
    })),
  (s) =>
    s.registerTool("search-repos", {
      description: "Searches repositories by query.",
      inputSchema: { query: z.string().describe("what to look for") },
    }, ({ query }) => ({
      content: [{ type: "text", text: `found: ${query}` }, { type: "text", text: '{"n": 1}' }],
    })),
  (s) =>
    s.registerTool("fail", { description: "Always fails." }, () => ({
      isError: true,
      content: [{ type: "text", text: "upstream says no" }],
    })),
  (s) =>
    s.registerTool(
      "hang",
      { description: "Answers only once cancelled." },
      (extra) =>
        new Promise((resolve) =>
          extra.signal.addEventListener(
            "abort",
            () => resolve({ content: [{ type: "text", text: "cancelled" }] }),
          )
        ),
    ),
  (s) =>
    s.registerTool("whoami", { description: "Requires the bearer token." }, (extra) => {
      const auth = extra.requestInfo?.headers.authorization;
      if (auth !== `Bearer ${SECRET}`) {
        return { isError: true, content: [{ type: "text", text: "unauthorized" }] };
      }
      return { content: [{ type: "text", text: "authorized" }] };
    }),
  (s) =>
    s.registerTool("leak", { description: "Echoes its credentials in an error." }, (extra) => {
      const auth = String(extra.requestInfo?.headers.authorization);
      return {
        isError: true,
        content: [{ type: "text", text: `bad token: ${auth} (${auth.slice("Bearer ".length)})` }],
      };
    }),
];

interface TestUpstream extends AsyncDisposable {
  url: string;
  port: number;
  /** Registers a tool on every session; the SDK sends `notifications/tools/list_changed`. */
  addTool(register: Register): void;
}

/** Serves MCP on loopback at `port` (default: a free one), a session per client. */
function serveUpstream(port = 0): TestUpstream {
  const tools = [...TOOLS];
  const servers = new Set<McpServer>();
  const transports = new Map<string, WebStandardStreamableHTTPServerTransport>();
  const http = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (req) => {
    const sid = req.headers.get("mcp-session-id");
    if (sid) {
      const transport = transports.get(sid);
      return transport
        ? await transport.handleRequest(req)
        : new Response("unknown session", { status: 404 });
    }
    const server = new McpServer({ name: "upstream-unit", version: "1.0.0" });
    for (const register of tools) register(server);
    servers.add(server);
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (id) => void transports.set(id, transport),
      });
    await server.connect(transport);
    return await transport.handleRequest(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    port: http.addr.port,
    addTool(register) {
      tools.push(register);
      for (const server of servers) register(server);
    },
    async [Symbol.asyncDispose]() {
      for (const server of servers) await server.close().catch(() => {});
      await http.shutdown();
    },
  };
}

function entry(url: string, headers: Record<string, string> = {}): McpServerEntry {
  return { name: "up", url, headers };
}

const env = (name: string) => name === "UP_TOKEN" ? SECRET : undefined;

async function until(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("every tool of a connected server is in the catalog, with its schema", async () => {
  await using upstream = serveUpstream();
  const lines: string[] = [];
  const up = await Upstreams.connect([entry(upstream.url)], { env, log: (l) => lines.push(l) });
  try {
    const catalog = up.catalog();
    assert.deepEqual(catalog.map((t) => t.name), [
      "echo",
      "search-repos",
      "fail",
      "hang",
      "whoami",
      "leak",
    ]);
    const search = catalog.find((t) => t.name === "search-repos")!;
    assert.equal(search.server, "up");
    assert.equal(search.description, "Searches repositories by query.");
    assert.equal(search.parameters.type, "object");
    assert.deepEqual(search.parameters.properties, {
      query: { type: "string", description: "what to look for" },
    });
    assert.deepEqual(search.parameters.required, ["query"]);
    assert.ok(up.version > 0);
    assert.deepEqual(up.servers(), ["up"]);
    assert.match(up.describe(), /moat_tools\.up: echo\(…\), search_repos\(…\), fail\(…\)/);
    assert.match(lines.join("\n"), /"event":"upstream-connected","server":"up","tools":6/);
  } finally {
    await up.close();
  }
});

Deno.test("a call answers with structured content, else the text, else the error", async () => {
  await using upstream = serveUpstream();
  const up = await Upstreams.connect([entry(upstream.url)], { env, log: () => {} });
  try {
    assert.deepEqual(await up.call("up", "echo", { n: 5 }, 5_000), { result: { n: 5 } });
    assert.deepEqual(await up.call("up", "search-repos", { query: "x" }, 5_000), {
      result: 'found: x\n{"n": 1}',
    });
    assert.deepEqual(await up.call("up", "fail", {}, 5_000), { error: "upstream says no" });
    const invalid = await up.call("up", "echo", { n: "five" }, 5_000);
    assert.ok("error" in invalid && /n/.test(invalid.error), JSON.stringify(invalid));
    assert.deepEqual(await up.call("up", "nope", {}, 5_000), { error: "no tool up.nope" });
    assert.deepEqual(await up.call("other", "echo", {}, 5_000), { error: "no tool other.echo" });
  } finally {
    await up.close();
  }
});

Deno.test("a hanging tool times out at its deadline while the same server keeps answering", async () => {
  await using upstream = serveUpstream();
  const up = await Upstreams.connect([entry(upstream.url)], { env, log: () => {} });
  try {
    const started = Date.now();
    const hanging = up.call("up", "hang", {}, 600);
    let hangEnded = 0;
    hanging.then(() => hangEnded = Date.now());
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await up.call("up", "echo", { n: 2 }, 5_000), { result: { n: 2 } });
    assert.equal(hangEnded, 0, "the other call answered while the hanging one waited");
    const outcome = await hanging;
    const took = Date.now() - started;
    assert.ok("error" in outcome && /timed out/i.test(outcome.error), JSON.stringify(outcome));
    assert.ok(took >= 590 && took < 3_000, `took ${took} ms`);

    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("the caller gave up")), 100);
    const aborted = await up.call("up", "hang", {}, 10_000, controller.signal);
    assert.ok("error" in aborted, JSON.stringify(aborted));
    assert.deepEqual(await up.call("up", "echo", { n: 3 }, 5_000), { result: { n: 3 } });
  } finally {
    await up.close();
  }
});

Deno.test("headers are sent with ${NAME}s from the environment, and never in an error", async () => {
  await using upstream = serveUpstream();
  const headers = { Authorization: "Bearer ${UP_TOKEN}" };
  const up = await Upstreams.connect([entry(upstream.url, headers)], { env, log: () => {} });
  try {
    assert.deepEqual(await up.call("up", "whoami", {}, 5_000), { result: "authorized" });
    const leak = await up.call("up", "leak", {}, 5_000);
    assert.deepEqual(leak, { error: "bad token: [header] ([header])" });
  } finally {
    await up.close();
  }
  const without = await Upstreams.connect([entry(upstream.url)], { env, log: () => {} });
  try {
    assert.deepEqual(await without.call("up", "whoami", {}, 5_000), { error: "unauthorized" });
  } finally {
    await without.close();
  }
});

Deno.test("a header naming an unset variable stops connect, naming server, header and variable", async () => {
  await assert.rejects(
    () =>
      Upstreams.connect([entry("http://127.0.0.1:9/mcp", { "X-Key": "k=${MISSING_KEY}" })], {
        env,
        log: () => {},
      }),
    /'up': header 'X-Key' names \$\{MISSING_KEY\}, which is not set/,
  );
});

Deno.test("tools/list_changed brings a new tool into the catalog and bumps its version", async () => {
  await using upstream = serveUpstream();
  const up = await Upstreams.connect([entry(upstream.url)], { env, log: () => {} });
  try {
    const before = up.version;
    upstream.addTool((s) =>
      s.registerTool("added", { description: "Added later." }, () => ({
        content: [{ type: "text", text: "new" }],
      }))
    );
    await until(() => up.catalog().some((t) => t.name === "added"), 5_000);
    assert.ok(up.version > before);
    assert.equal(up.catalog().find((t) => t.name === "added")?.description, "Added later.");
    assert.deepEqual(await up.call("up", "added", {}, 5_000), { result: "new" });
  } finally {
    await up.close();
  }
});

Deno.test("a server down at connect is logged, retried, and appears once it is up", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const lines: string[] = [];
  const up = await Upstreams.connect(
    [entry(`http://127.0.0.1:${port}/mcp`, { Authorization: "Bearer ${UP_TOKEN}" })],
    { env, log: (l) => lines.push(l) },
  );
  try {
    const down = JSON.parse(lines[0]);
    assert.equal(down.event, "upstream-unavailable");
    assert.equal(down.server, "up");
    assert.equal(typeof down.message, "string");
    assert.ok(!lines[0].includes(SECRET));
    assert.deepEqual(up.catalog(), []);
    assert.deepEqual(up.servers(), ["up"]);
    assert.match(up.describe(), /moat_tools\.up: \(not connected yet\)/);
    assert.deepEqual(await up.call("up", "echo", { n: 1 }, 1_000), { error: "no tool up.echo" });
    const version = up.version;
    await using _upstream = serveUpstream(port);
    await until(() => up.catalog().length > 0, 8_000);
    assert.ok(up.version > version);
    assert.deepEqual(await up.call("up", "echo", { n: 1 }, 5_000), { result: { n: 1 } });
  } finally {
    await up.close();
  }
});

Deno.test("a server that goes away gives errors, not exceptions, and is reconnected once back", async () => {
  const upstream = serveUpstream();
  const lines: string[] = [];
  const up = await Upstreams.connect([entry(upstream.url)], { env, log: (l) => lines.push(l) });
  try {
    await upstream[Symbol.asyncDispose]();
    const gone = await up.call("up", "echo", { n: 1 }, 2_000);
    assert.ok("error" in gone, JSON.stringify(gone));
    assert.doesNotMatch(gone.error, /\/work\/|file:\/\//);
    await until(() => lines.some((l) => l.includes('"upstream-unavailable"')), 5_000);
    assert.deepEqual(up.catalog(), []);
    // It comes back on the same port, as a new process would: its old session is unknown.
    await using _again = serveUpstream(upstream.port);
    await until(() => up.catalog().length > 0, 8_000);
    assert.deepEqual(await up.call("up", "echo", { n: 2 }, 5_000), { result: { n: 2 } });
  } finally {
    await up.close();
  }
});

Deno.test("a server restarted between two calls gets a new session", async () => {
  const first = serveUpstream();
  const up = await Upstreams.connect([entry(first.url)], { env, log: () => {} });
  try {
    await first[Symbol.asyncDispose]();
    await using _restarted = serveUpstream(first.port);
    const stale = await up.call("up", "echo", { n: 1 }, 2_000);
    assert.ok("error" in stale, JSON.stringify(stale));
    await until(() => up.catalog().length > 0, 8_000);
    assert.deepEqual(await up.call("up", "echo", { n: 2 }, 5_000), { result: { n: 2 } });
  } finally {
    await up.close();
  }
});

Deno.test("servers connect in parallel: one down does not hold up another", async () => {
  await using upstream = serveUpstream();
  const up = await Upstreams.connect([
    { name: "down", url: "http://127.0.0.1:9/mcp", headers: {} },
    { name: "up", url: upstream.url, headers: {} },
  ], { env, log: () => {} });
  try {
    assert.deepEqual(up.servers(), ["down", "up"]);
    assert.ok(up.catalog().every((t) => t.server === "up") && up.catalog().length === 6);
    assert.deepEqual(await up.call("up", "echo", { n: 4 }, 5_000), { result: { n: 4 } });
  } finally {
    await up.close();
  }
});

Deno.test("the grants name each server's host:port and each ${NAME} its headers use", () => {
  const servers: McpServerEntry[] = [
    { name: "a", url: "https://api.example.com/mcp", headers: { A: "Bearer ${GH_TOKEN}" } },
    { name: "b", url: "http://10.0.0.5:9000/mcp", headers: { B: "${X_ID}:${X_KEY}", C: "plain" } },
    { name: "c", url: "http://api.example.com/other", headers: { A: "${GH_TOKEN}" } },
    { name: "d", url: "https://api.example.com/mcp2", headers: {} },
  ];
  assert.deepEqual(upstreamHosts(servers), [
    "api.example.com:443",
    "10.0.0.5:9000",
    "api.example.com:80",
  ]);
  assert.deepEqual(envNames(servers), ["GH_TOKEN", "X_ID", "X_KEY"]);
  assert.deepEqual(upstreamHosts([]), []);
  assert.deepEqual(envNames([]), []);
});
