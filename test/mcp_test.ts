/**
 * Moat as an MCP server, through the TypeScript SDK's own client, over Streamable HTTP at
 * `/mcp` and over stdio (`deno task mcp`). The same steps run over both transports.
 */
import assert from "node:assert/strict";
// @ts-types="@modelcontextprotocol/sdk/types"
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import {
  type Client,
  httpClient,
  INITIALIZE,
  stdioArgs,
  stdioClient,
  stdioEnv,
} from "./helpers/mcp.ts";
import { startServer } from "./helpers/server.ts";
import { assertNothingLeaked, SECRET_TOKEN } from "./security/attempts.ts";

const POLICY = `
limits:
  timeoutMs: 1500
  memoryMb: 256
  sessions: 8
packages:
  deny: ["pandas"]
  preload: []
`;

const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/** The text of a `run_python_code` call. */
async function run(client: Client, code: string, extra: Record<string, unknown> = {}) {
  const result = await client.callTool({
    name: "run_python_code",
    arguments: { python_code: code, ...extra },
  });
  const content = result.content as { type: string; text?: string; data?: string }[];
  return { text: content[0].text ?? "", content, isError: result.isError };
}

/** mcp-run-python's input schema (its test snapshot), with Moat's `packages` added. */
const INPUT_SCHEMA = {
  type: "object",
  properties: {
    python_code: { type: "string", description: "Python code to run" },
    global_variables: {
      type: "object",
      additionalProperties: {},
      default: {},
      description: "Map of global variables in context when the code is executed",
    },
    packages: {
      type: "array",
      items: { type: "string" },
      default: [],
      description: "Packages to load before the code runs (distribution or import names)",
    },
  },
  required: ["python_code"],
  additionalProperties: false,
  $schema: "http://json-schema.org/draft-07/schema#",
};

/** What a host sees over either transport. */
async function commonSteps(t: Deno.TestContext, client: Client): Promise<void> {
  await t.step("initialize names the server and offers tools and logging", () => {
    assert.equal(client.getServerVersion()?.name, "moat");
    const caps = client.getServerCapabilities();
    assert.ok(caps?.tools && caps?.logging, JSON.stringify(caps));
  });

  await t.step(
    "a long call's output arrives as logging notifications before its result",
    async () => {
      const seen: { logger?: string; data: unknown; beforeResult: boolean }[] = [];
      let answered = false;
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
        seen.push({ logger: n.params.logger, data: n.params.data, beforeResult: !answered });
      });
      const code =
        "import sys, time\nfor i in range(3):\n    print(f'tick {i}')\n    time.sleep(0.3)\n" +
        "print('late', file=sys.stderr)";
      const { text } = await run(client, code);
      answered = true;
      assert.match(text, /<status>success<\/status>/);
      // One notification per tick: each was sent as it was printed, not all at the end.
      assert.deepEqual(seen, [
        { logger: "stdout", data: "tick 0\n", beforeResult: true },
        { logger: "stdout", data: "tick 1\n", beforeResult: true },
        { logger: "stdout", data: "tick 2\n", beforeResult: true },
        { logger: "stderr", data: "late\n", beforeResult: true },
      ]);
      client.removeNotificationHandler("notifications/message");
    },
  );

  await t.step("run_python_code has mcp-run-python's schema and first sentence", async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((tool) => tool.name), ["run_python_code", "reset_session"]);
    assert.deepEqual(tools[0].inputSchema, INPUT_SCHEMA);
    assert.ok(
      tools[0].description?.startsWith(
        "Tool to execute Python code and return stdout, stderr, and return value.",
      ),
    );
  });

  await t.step("a call's output text is mcp-run-python's XML", async () => {
    const { text } = await run(client, "x = 4\nprint(f'{x=}')\nx");
    assert.equal(
      text,
      "<status>success</status>\n<output>\nx=4\n</output>\n<return_value>\n4\n</return_value>",
    );
  });

  await t.step("state persists from one call to the next", async () => {
    const { text } = await run(client, "x * 10");
    assert.equal(text, "<status>success</status>\n<return_value>\n40\n</return_value>");
  });

  await t.step("global_variables are set before the code runs", async () => {
    const { text } = await run(client, "greeting + '!'", { global_variables: { greeting: "hi" } });
    assert.equal(text, "<status>success</status>\n<return_value>\nhi!\n</return_value>");
  });

  await t.step("a run error shows the traceback of main.py", async () => {
    const { text, isError } = await run(client, "print('before')\nprint(unknown)");
    assert.equal(isError, undefined);
    assert.equal(
      text,
      `<status>run-error</status>
<output>
before
</output>
<error>
Traceback (most recent call last):
  File "main.py", line 2, in <module>
    print(unknown)
          ^^^^^^^
NameError: name 'unknown' is not defined

</error>`,
    );
  });

  await t.step(
    "a package the policy refuses is an install-error and the code does not run",
    async () => {
      const { text } = await run(client, "ran = True", { packages: ["pandas"] });
      assert.match(
        text,
        /^<status>install-error<\/status>\n<error>\npackage 'pandas' was not loaded: /,
      );
      assert.match(text, /policy/);
      assert.match((await run(client, "'ran' in globals()")).text, /false/);
    },
  );

  await t.step("an object with _repr_png_ comes back as MCP image content", async () => {
    const code = `import base64
class Picture:
    def _repr_png_(self):
        return base64.b64decode("${PNG}")
Picture()`;
    const { text, content } = await run(client, code);
    assert.equal(text, "<status>success</status>");
    assert.deepEqual(content[1], { type: "image", data: PNG, mimeType: "image/png" });
  });

  await t.step(
    "a call past the time limit is interrupted and the session keeps its state",
    async () => {
      const { text } = await run(client, "while True: pass");
      assert.match(text, /^<status>run-error<\/status>/);
      assert.match(text, /TimeoutError: Execution exceeded the time limit of 1500 ms/);
      // Interrupted, not stopped: "did not stop when interrupted" would mean the state is lost.
      const after = (await run(client, "x")).text;
      assert.match(after, /<return_value>\n4\n/, `after ${JSON.stringify(text)}`);
    },
  );

  await t.step("a memory bomb raises MemoryError and the session lives on", async () => {
    const { text } = await run(client, "b = bytearray(300 * 1024 * 1024)");
    assert.match(text, /^<status>run-error<\/status>[\s\S]*MemoryError/);
    assert.match((await run(client, "x")).text, /<return_value>\n4\n/);
  });

  await t.step("reaching the host through js.Deno fails and leaks nothing", async () => {
    const { text } = await run(client, "import js\njs.Deno.readTextFileSync('/etc/passwd')");
    assert.match(text, /^<status>run-error<\/status>/);
    assertNothingLeaked(text);
  });

  await t.step("a bad argument is a JSON-RPC invalid-params error naming it", async () => {
    await assert.rejects(
      client.callTool({ name: "run_python_code", arguments: { python_code: 42 } }),
      (err: { code: number; message: string }) => {
        assert.equal(err.code, -32602);
        assert.match(err.message, /'python_code' must be a string/);
        return true;
      },
    );
    await assert.rejects(
      client.callTool({ name: "run_python_code", arguments: { python_code: "1", timeout: 3 } }),
      /'timeout' is not an argument/,
    );
  });

  await t.step("reset_session starts from a clean interpreter", async () => {
    await client.callTool({ name: "reset_session", arguments: {} });
    assert.match((await run(client, "x")).text, /NameError: name 'x' is not defined/);
  });
}

Deno.test("an MCP host uses Moat over Streamable HTTP", async (t) => {
  await using server = await startServer({
    policyText: POLICY,
    env: { MOAT_TOKEN: SECRET_TOKEN },
  });
  const before = (await (await server.request("/v1/sessions")).json()).sessions.length;
  await using mcp = await httpClient(server);
  await commonSteps(t, mcp.client);

  await t.step("no token or a wrong one is 401", async () => {
    const init = { method: "POST", body: "{}", headers: { "content-type": "application/json" } };
    const none = await server.request("/mcp", { ...init, auth: false });
    assert.equal(none.status, 401);
    await none.body?.cancel();
    const wrong = await fetch(`${server.url}/mcp`, {
      ...init,
      headers: { ...init.headers, authorization: "Bearer wrong-token-0123456789" },
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
  });

  await t.step("a malformed message is a JSON-RPC error, never a 5xx", async () => {
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    for (const body of ["{not json", '{"jsonrpc": "2.0"}', "[]", '"x"']) {
      const res = await server.request("/mcp", { method: "POST", body, headers });
      assert.ok(res.status >= 400 && res.status < 500, `${body}: ${res.status}`);
      const answer = await res.json();
      assert.equal(answer.jsonrpc, "2.0");
      assert.equal(typeof answer.error.code, "number");
    }
    const unknown = await server.request("/mcp", {
      method: "POST",
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
      headers: { ...headers, "mcp-session-id": "no-such-session" },
    });
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).error.code, -32001);
  });

  await t.step("a session's GET stream opens, and DELETE ends the session", async () => {
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    const init = await server.request("/mcp", {
      method: "POST",
      headers,
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, ...INITIALIZE }),
    });
    assert.equal(init.status, 200);
    await init.body?.cancel();
    const session = {
      "mcp-session-id": init.headers.get("mcp-session-id")!,
      "mcp-protocol-version": "2025-06-18",
    };
    assert.ok(session["mcp-session-id"]);
    const stream = await server.request("/mcp", {
      headers: { accept: "text/event-stream", ...session },
    });
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get("content-type") ?? "", /text\/event-stream/);
    await stream.body?.cancel();
    const end = await server.request("/mcp", { method: "DELETE", headers: session });
    assert.equal(end.status, 200);
    await end.body?.cancel();
    const gone = await server.request("/mcp", {
      headers: { accept: "text/event-stream", ...session },
    });
    assert.equal(gone.status, 404);
    await gone.body?.cancel();
  });

  await t.step("two MCP sessions cannot see each other's variables", async () => {
    await using other = await httpClient(server);
    await run(mcp.client, "secret = 'mine'");
    assert.match((await run(other.client, "secret")).text, /NameError: name 'secret'/);
  });

  await t.step("ending an MCP session frees its interpreter", async () => {
    await using ending = await httpClient(server);
    await run(ending.client, "1");
    const during = (await (await server.request("/v1/sessions")).json()).sessions.length;
    await ending.transport.terminateSession();
    const after = (await (await server.request("/v1/sessions")).json()).sessions.length;
    assert.equal(after, during - 1);
    // The first client's session stays: one more than before the test.
    assert.equal(after, before + 1);
  });

  await t.step(
    "SIGTERM stops the server cleanly while a host holds its MCP stream open",
    async () => {
      server.kill("SIGTERM");
      assert.equal((await server.exited()).code, 0);
    },
  );
});

Deno.test("an MCP host uses Moat over stdio, whose stdout carries only the protocol", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-mcp-" });
  const policy = `${dir}/policy.yaml`;
  await Deno.writeTextFile(policy, POLICY);
  try {
    await using mcp = await stdioClient(policy);
    await commonSteps(t, mcp.client);

    await t.step("the audit trail goes to stderr and stdout held nothing else", () => {
      assert.match(mcp.stderr(), /"event":"call"/);
      assert.deepEqual(mcp.errors, []);
    });

    await t.step("two stdio servers cannot see each other's variables", async () => {
      await using other = await stdioClient(policy);
      await run(mcp.client, "secret = 'mine'");
      assert.match((await run(other.client, "secret")).text, /NameError: name 'secret'/);
    });

    await t.step("JSON mode writes mcp-run-python's JSON form", async () => {
      await using json = await stdioClient(policy, { MOAT_MCP_RETURN_MODE: "json" });
      const { text } = await run(json.client, "print('a')\n'b'");
      assert.equal(text, '{"status":"success","output":["a"],"return_value":"b"}');
    });

    await t.step(
      "a malformed line gets a JSON-RPC error, and closing stdin stops the server",
      async () => {
        const env = await stdioEnv(policy);
        const child = new Deno.Command(Deno.execPath(), {
          args: await stdioArgs(env),
          env,
          cwd: new URL("../", import.meta.url).pathname,
          stdin: "piped",
          stdout: "piped",
          stderr: "null",
        }).spawn();
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode("{not json\n"));
        await writer.close();
        const { code, stdout } = await child.output();
        const lines = new TextDecoder().decode(stdout).trim().split("\n");
        assert.equal(lines.length, 1, lines.join("\n"));
        const reply = JSON.parse(lines[0]);
        assert.equal(reply.error.code, -32700);
        assert.equal(code, 0);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A raw JSON-RPC request to `/mcp`, as a host that misbehaves would send it. */
async function rpc(
  server: Awaited<ReturnType<typeof startServer>>,
  message: Record<string, unknown>,
  session?: string,
) {
  const res = await server.request("/mcp", {
    method: "POST",
    body: JSON.stringify({ jsonrpc: "2.0", ...message }),
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...(session ? { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" } : {}),
    },
  });
  const text = await res.text();
  // An answer comes as JSON or as one SSE event, depending on the transport's choice.
  const data = text.startsWith("{") ? text : text.split("\n").find((l) => l.startsWith("data: "));
  return {
    status: res.status,
    session: res.headers.get("mcp-session-id") ?? undefined,
    retryAfter: res.headers.get("retry-after"),
    body: data ? JSON.parse(data.replace(/^data: /, "")) : undefined,
  };
}

Deno.test("MCP sessions over HTTP are bounded, and bad arguments are invalid params", async (t) => {
  await using server = await startServer({
    policyText: POLICY.replace("limits:\n", "limits:\n  mcpSessions: 3\n  idleTtlSeconds: 2\n"),
  });
  const held: string[] = [];

  await t.step("initialize past limits.mcpSessions is a 503 naming the limit", async () => {
    for (let i = 0; i < 3; i++) {
      const got = await rpc(server, { id: i, ...INITIALIZE });
      assert.equal(got.status, 200);
      held.push(got.session!);
    }
    for (let i = 0; i < 20; i++) {
      const got = await rpc(server, { id: 10 + i, ...INITIALIZE });
      assert.equal(got.status, 503);
      assert.equal(got.retryAfter, "5");
      assert.match(got.body.error.message, /limits\.mcpSessions/);
    }
  });

  await t.step("a tools/call whose arguments are not an object is -32602", async () => {
    for (const args of [[1, 2], "print(1)", 7]) {
      const got = await rpc(server, {
        id: 99,
        method: "tools/call",
        params: { name: "run_python_code", arguments: args },
      }, held[0]);
      assert.equal(got.body.error.code, -32602, JSON.stringify(got.body));
    }
  });

  await t.step("sessions that called no tool end soon, and make room", async () => {
    // idleTtlSeconds 2 bounds the unused sessions' time too; the sweeper runs every 0.5 s.
    await new Promise((r) => setTimeout(r, 3_000));
    const gone = await rpc(server, { id: 1, method: "tools/list" }, held[1]);
    assert.equal(gone.status, 404);
    const again = await rpc(server, { id: 2, ...INITIALIZE });
    assert.equal(again.status, 200);
  });
});
