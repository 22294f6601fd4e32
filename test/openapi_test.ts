import assert from "node:assert/strict";
import type { z } from "zod";
import { createApp } from "../src/http/app.ts";
import { honoPath } from "../src/http/openapi.ts";
import type { McpHttp } from "../src/mcp/http.ts";
import { Metrics } from "../src/metrics.ts";
import { PolicySchema } from "../src/policy/schema.ts";
import type { SessionManager } from "../src/session/manager.ts";
import { startServer, type TestServer } from "./helpers/server.ts";
import { stream } from "./helpers/sse.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const METHODS = ["get", "post", "put", "delete", "patch"] as const;

// deno-lint-ignore no-explicit-any
type Doc = { paths: Record<string, Record<string, any>>; components: { schemas: any } };

/**
 * The app as main.ts builds it, to walk its routes and read the zod schemas behind the document.
 * No handler runs, so it needs no sessions.
 */
function appForRoutes() {
  return createApp({
    token: "t".repeat(16),
    policy: PolicySchema.parse({}),
    sessions: {} as SessionManager,
    metrics: new Metrics(),
    mcp: {} as McpHttp,
    health: () => ({}),
  });
}

/** The zod schema of a documented JSON response, from the route definitions themselves. */
function responseSchema(method: string, path: string, status: number): z.ZodType | undefined {
  const app = appForRoutes();
  for (const def of app.openAPIRegistry.definitions) {
    if (def.type !== "route" || def.route.method !== method || def.route.path !== path) continue;
    // deno-lint-ignore no-explicit-any
    return (def.route.responses[status] as any)?.content?.["application/json"]?.schema;
  }
}

Deno.test("the OpenAPI document lists every route the server serves, and its examples work", async (t) => {
  await using server = await startServer({ env: { MOAT_TOKEN: "openapi-token-0123456789" } });
  const res = await server.request("/openapi.json", { auth: false });
  assert.equal(res.status, 200);
  const doc: Doc = await res.json();

  await t.step("it is OpenAPI 3.1 and needs no token", () => {
    assert.match((doc as unknown as { openapi: string }).openapi, /^3\.1\./);
  });

  await t.step("every route Hono serves is documented, and nothing else", () => {
    const served = appForRoutes().routes
      // Only the middleware (auth, body limit) is left out; a route for every method is not.
      .filter((r) => !(r.method === "ALL" && ["*", "/*"].includes(r.path)))
      .map((r) => `${r.method} ${r.path}`);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      METHODS.filter((m) => ops[m]).map((m) => `${m.toUpperCase()} ${honoPath(path)}`)
    );
    for (const route of served) assert.ok(documented.includes(route), `${route} is not documented`);
    for (const route of documented) assert.ok(served.includes(route), `${route} is not served`);
    const must = ["GET /", "POST /", "GET /v1/sessions/:id", "POST /v1/sessions/:id"];
    for (const route of [...must, "POST /mcp", "GET /mcp", "DELETE /mcp"]) {
      assert.ok(served.includes(route), route);
    }
  });

  await t.step(
    "/mcp is described, pointing at docs/mcp.md, and its example initializes",
    async () => {
      const mcp = doc.paths["/mcp"];
      assert.deepEqual(Object.keys(mcp).sort(), ["delete", "get", "post"]);
      for (const op of Object.values(mcp)) {
        assert.deepEqual(op.tags, ["mcp"]);
        assert.match(op.description, /Streamable HTTP/);
        assert.match(op.description, /docs\/mcp\.md/);
      }
      const tag = (doc as unknown as { tags: { name: string; description: string }[] }).tags
        .find((t) => t.name === "mcp");
      assert.match(tag!.description, /docs\/mcp\.md/);
      // The documented initialize message, sent as the description says, opens an MCP session.
      const body = mcp.post.requestBody.content["application/json"].schema;
      const [initialize] = (body.$ref ? doc.components.schemas[body.$ref.split("/").pop()!] : body)
        .examples;
      assert.equal(initialize.method, "initialize");
      const res = await server.request("/mcp", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify(initialize),
      });
      assert.equal(res.status, 200);
      const id = res.headers.get("mcp-session-id");
      assert.ok(id);
      assert.match(await res.text(), /"serverInfo":\{"name":"moat"/);
      const end = await server.request("/mcp", {
        method: "DELETE",
        headers: { "mcp-session-id": id },
      });
      assert.equal(end.status, 200);
      await end.body?.cancel();
    },
  );

  // Every JSON operation is called on the real server, with each example of its request body
  // (or none); the answer must be a success shaped as the document says.
  const resolve = (schema: { $ref?: string; examples?: unknown[] }) =>
    schema?.$ref ? doc.components.schemas[schema.$ref.split("/").pop()!] : schema;
  const operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    METHODS.filter((m) => ops[m]).map((m) => ({ path, method: m, op: ops[m] }))
  ).filter(({ path }) =>
    // /mcp speaks MCP, not Moat's JSON: its own step above calls it.
    !["/openapi.json", "/metrics", "/mcp"].includes(path) && !path.startsWith("/docs")
  );
  let examples = 0;
  for (const { path, method, op } of operations) {
    const body = op.requestBody?.content?.["application/json"];
    const bodies: unknown[] = body ? resolve(body.schema).examples ?? [] : [undefined];
    if (body) assert.ok(bodies.length > 0, `${method} ${path} documents no request example`);
    if (body && !op.requestBody.required) bodies.push(undefined);
    for (const example of bodies) {
      const what = example === undefined ? "no body" : JSON.stringify(example);
      await t.step(
        `${method.toUpperCase()} ${path} with ${what} succeeds as documented`,
        async () => {
          const id = path.includes("{id}") ? await server.createSession() : "";
          // A file route acts on its documented example file, uploaded first.
          const file = op.parameters?.find((p: { name: string }) => p.name === "path");
          const url = path.replace("{id}", id).replace("{path}", file?.schema?.examples?.[0]);
          if (file && method !== "put") {
            const put = await server.request(url, { method: "PUT", body: "a,b\n1,2\n" });
            assert.ok(put.status === 200 || put.status === 201, `${put.status}`);
          }
          // A tool result answers a call that waits: one is started first, and its id used.
          const waiting = path.endsWith("/tool-results")
            ? await waitingToolCall(server, url.replace(/\/?tool-results$/, "") || "/")
            : undefined;
          const sent = waiting ? { ...example as object, id: waiting.id } : example;
          const res = await server.request(url, {
            method: method.toUpperCase(),
            ...(sent === undefined ? {} : { body: JSON.stringify(sent) }),
          });
          await waiting?.rest;
          if (res.status === 204) {
            assert.ok(op.responses[204], `${method} ${path}: 204 is documented`);
            return;
          }
          if (!res.headers.get("content-type")?.includes("json")) {
            // A download: raw bytes, documented as such.
            assert.equal(res.status, 200);
            assert.ok(op.responses[200].content["application/octet-stream"]);
            assert.equal(await res.text(), "a,b\n1,2\n");
            return;
          }
          const answer = await res.json();
          assert.ok(
            res.status >= 200 && res.status < 300,
            `${res.status} ${JSON.stringify(answer)}`,
          );
          const schema = responseSchema(method, path, res.status);
          assert.ok(schema, `no documented ${res.status} response`);
          const parsed = schema.safeParse(answer);
          assert.ok(parsed.success, `${JSON.stringify(answer)}: ${parsed.error?.message}`);
          if (answer && "error" in answer && "stdout" in answer) assert.equal(answer.error, null);
          if (example !== undefined) examples++;
        },
      );
    }
  }
  await t.step("the examples of both request bodies were sent", () => {
    assert.ok(examples >= 5, `${examples} examples`);
  });
});

Deno.test("the document and the docs page reveal neither the token, the host nor any path", async (t) => {
  const mount = await Deno.makeTempDir({ prefix: "moat-openapi-mount-" });
  const metricsToken = "metrics-secret-0123456789";
  try {
    await using server = await startServer({
      policyText: `mounts:\n  - { host: ${mount}, at: /data }\n`,
      env: { MOAT_TOKEN: "docs-secret-token-0123456789", MOAT_METRICS_TOKEN: metricsToken },
    });
    const hostPort = new URL(server.url).host;
    for (const path of ["/openapi.json", "/docs", "/docs/init.js", "/docs/swagger-ui.css"]) {
      await t.step(`${path} is served without a token and holds no secret`, async () => {
        const res = await server.request(path, { auth: false });
        assert.equal(res.status, 200);
        const text = await res.text();
        for (const secret of [server.token, metricsToken, hostPort, ROOT, mount, "policy.yaml"]) {
          assert.ok(!text.includes(secret), `${path} contains ${secret}`);
        }
      });
    }
    await t.step("the page's script bundle holds no secret either", async () => {
      const res = await server.request("/docs/swagger-ui-bundle.js", { auth: false });
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type")!, /javascript/);
      const text = await res.text();
      for (const secret of [server.token, metricsToken, hostPort, ROOT, mount]) {
        assert.ok(!text.includes(secret), `the bundle contains ${secret}`);
      }
    });
    await t.step("the page may load nothing from elsewhere (Content-Security-Policy)", async () => {
      const res = await server.request("/docs", { auth: false });
      await res.body?.cancel();
      const csp = res.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /connect-src 'self'/);
      assert.match(csp, /script-src 'self'(;|$)/);
    });
    await t.step("an unknown docs file is a JSON 404, not a file read", async () => {
      for (const name of ["index.html", "..%2F..%2Fdeno.json", "swagger-ui.js"]) {
        const res = await server.request(`/docs/${name}`, { auth: false });
        assert.equal(res.status, 404, name);
        assert.equal((await res.json()).error.name, "NotFound");
      }
    });
  } finally {
    await Deno.remove(mount, { recursive: true });
  }
});

/** Starts a streamed call that calls a host tool; its call id, and the rest of its stream. */
async function waitingToolCall(server: TestServer, path: string) {
  const tool = { name: "weather", description: "", parameters: {} };
  const events = stream(server, path, { code: "weather()", tools: [tool] });
  for (let next = await events.next(); !next.done; next = await events.next()) {
    if (next.value.event !== "tool_call") continue;
    const rest = (async () => {
      for await (const _ of events) { /* to the end */ }
    })();
    return { id: JSON.parse(next.value.data).id as string, rest };
  }
  throw new Error("no tool_call event");
}
