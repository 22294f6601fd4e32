/**
 * Code mode (PROTOCOL.md §6): the policy's upstream MCP servers become `moat_tools.<name>` in
 * every session, called by the host with headers the sandbox never sees. The upstream is a real
 * MCP server (the SDK's) on loopback; Moat reaches it through the flags derived from the policy.
 */
import assert from "node:assert/strict";
import { grantsFor } from "../src/permissions/flags.ts";
import { PolicySchema } from "../src/policy/schema.ts";
import { httpClient } from "./helpers/mcp.ts";
import { freePort } from "./helpers/redis.ts";
import { startServer, TestServer } from "./helpers/server.ts";
import { startUpstream } from "./helpers/upstream_mcp.ts";

const SECRET = "upstream-secret-7f3a9c1e5b";
const policy = (url: string, extra = "") =>
  `limits:\n  toolCallMs: 1500\n${extra}tools:\n  mcp:\n    - name: up\n      url: ${url}\n` +
  `      headers:\n        Authorization: "Bearer \${MOAT_TEST_UPSTREAM_TOKEN}"\n`;

Deno.test("code mode: an upstream MCP server's tools are a Python module", async (t) => {
  await using upstream = startUpstream();
  await using server = await startServer({
    policyText: policy(upstream.url),
    env: { MOAT_TEST_UPSTREAM_TOKEN: SECRET },
  });

  await t.step("tools answer on a plain call: structured content, text, positional", async () => {
    const answer = await server.exec(
      "from moat_tools import up\n[up.echo(n=5), up.search_repos('pyodide'), " +
        "up.search_repos(query='x')]",
    );
    assert.equal(answer.error, null, answer.error?.message);
    assert.deepEqual(answer.result, [{ n: 5 }, "found: pyodide", "found: x"]);
    assert.ok(upstream.authorizations.includes(`Bearer ${SECRET}`), "the header went upstream");
  });

  await t.step("help shows the tool's description and arguments", async () => {
    const doc = await server.exec("import moat_tools\nmoat_tools.up.search_repos.__doc__");
    assert.match(doc.result, /Searches repositories by query\.[\s\S]*query \(string\): what to/);
  });

  await t.step(
    "an upstream error and a hanging tool are ToolError; the hang holds up no one",
    async () => {
      const failed = await server.exec("from moat_tools import up\nup.fail()");
      assert.equal(failed.error?.pythonExceptionType, "ToolError");
      assert.equal(failed.error?.pythonExceptionValue, "upstream says no");
      const other = await server.createSession();
      const hanging = server.exec(
        "from moat_tools import up\ntry:\n    up.hang()\nexcept ToolError as e:\n    why = str(e)\nwhy",
      );
      await new Promise((r) => setTimeout(r, 200));
      const quick = await server.exec("from moat_tools import up\nup.echo(n=1)", {
        session: other,
      });
      assert.deepEqual(quick.result, { n: 1 }, "another session's call answers meanwhile");
      const hung = await hanging;
      assert.match(hung.result, /limits\.toolCallMs \(1500 ms\)|timed out/i);
      assert.doesNotMatch(hung.result, new RegExp(SECRET));
    },
  );

  await t.step("the headers' secret is nowhere in the sandbox", async () => {
    const scan = await server.exec(`
import os, sys, builtins, moat_tools
seen = [repr(dict(os.environ)), repr(vars(builtins)), repr(vars(moat_tools))]
for name, module in list(sys.modules.items()):
    try:
        seen.append(repr(vars(module)))
    except Exception:
        pass
for tool in vars(moat_tools.up).values():
    seen.append(repr(getattr(tool, "__doc__", "")))
    seen.append(repr(getattr(tool, "__closure__", None)))
text = "\\n".join(seen)
# Made only now, from pieces, so that neither the cell's source nor its globals hold it whole.
[${JSON.stringify(SECRET.slice(0, 9))} + ${JSON.stringify(SECRET.slice(9))} in text,
 "MOAT_TEST_" + "UPSTREAM_TOKEN" in text, len(text) > 10000]`);
    assert.equal(scan.error, null, scan.error?.message);
    assert.deepEqual(scan.result, [false, false, true]);
  });

  await t.step("Python cannot reach the upstream server except through its module", async () => {
    const direct = await server.exec(
      `import urllib.request\ntry:\n    urllib.request.urlopen(${JSON.stringify(upstream.url)}, ` +
        `timeout=2)\n    out = 'reached'\nexcept Exception as e:\n    out = type(e).__name__\nout`,
    );
    assert.notEqual(direct.result, "reached");
    const noFetch = await server.exec("import importlib.util\nimportlib.util.find_spec('moat')");
    assert.equal(noFetch.result, null, "no moat.fetch without network.allow");
    const forged = await server.exec(
      "import moat_tools\nf = moat_tools._function('x', '', {}, 'up.not_a_tool')\nf()",
    );
    assert.equal(forged.error?.pythonExceptionType, "ToolError");
    assert.match(forged.error!.pythonExceptionValue, /no tool 'up\.not_a_tool' in this call/);
  });

  await t.step(
    "a tool the upstream adds (tools/list_changed) is there on a later call",
    async () => {
      await upstream.addTool({
        name: "added",
        description: "Added later.",
        inputSchema: { type: "object", properties: {} },
      }, () => ({ content: [{ type: "text", text: "new" }] }));
      let answer;
      for (let i = 0; i < 50; i++) {
        answer = await server.exec(
          "from moat_tools import up\nhasattr(up, 'added') and up.added()",
        );
        if (answer.result === "new") break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(answer?.result, "new");
    },
  );

  await t.step("MCP hosts: run_python_code lists the modules and uses them", async () => {
    await using mcp = await httpClient(server);
    const { tools } = await mcp.client.listTools();
    const run = tools.find((tool) => tool.name === "run_python_code")!;
    assert.match(run.description!, /moat_tools\.up: echo\(…\), search_repos\(…\)/);
    const result = await mcp.client.callTool({
      name: "run_python_code",
      arguments: { python_code: "from moat_tools import up\nup.echo(n=41)['n'] + 1" },
    });
    const text = (result.content as { text: string }[]).map((c) => c.text).join("");
    assert.match(text, /<return_value>\s*42\s*<\/return_value>/);
  });

  await t.step("/metrics counts upstream calls", async () => {
    const text = await (await server.request("/metrics")).text();
    assert.match(text, /moat_tool_calls_total\{source="upstream",outcome="ok"\} [1-9]/);
    assert.match(text, /moat_tool_calls_total\{source="upstream",outcome="error"\} [1-9]/);
  });
});

Deno.test("code mode: a header naming an unset variable stops the start, naming it", async () => {
  const server = new TestServer({ policyText: policy("http://127.0.0.1:9/mcp") });
  await assert.rejects(
    () => server.start(),
    /header 'Authorization' names \$\{MOAT_TEST_UPSTREAM_TOKEN\}, which is not set/,
  );
});

Deno.test("code mode: an upstream that is down at start-up is retried until it answers", async () => {
  const port = freePort();
  await using server = await startServer({
    policyText: policy(`http://127.0.0.1:${port}/mcp`),
    env: { MOAT_TEST_UPSTREAM_TOKEN: SECRET },
  });
  assert.match(server.stderr, /"event":"upstream-unavailable","server":"up"/);
  const before = await server.exec(
    "from moat_tools import up\n[n for n in dir(up) if not n.startswith('_')]",
  );
  assert.deepEqual(before.result, []);
  await using _upstream = startUpstream(port);
  let answer;
  for (let i = 0; i < 60; i++) {
    answer = await server.exec("from moat_tools import up\nhasattr(up, 'echo') and up.echo(n=3)");
    if (answer.result?.n === 3) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.deepEqual(answer?.result, { n: 3 });
});

Deno.test("code mode's flags grant exactly the upstream hosts and the variables its headers name", () => {
  const base = PolicySchema.parse({});
  const withTools = PolicySchema.parse({
    tools: {
      mcp: [
        { name: "gh", url: "https://api.example.com/mcp", headers: { A: "Bearer ${GH_TOKEN}" } },
        { name: "local", url: "http://10.0.0.5:9000/mcp", headers: { B: "${X_ID}:${X_KEY}" } },
      ],
    },
  });
  const before = grantsFor(base);
  const after = grantsFor(withTools);
  assert.deepEqual(
    after.net.filter((h) => !before.net.includes(h)),
    ["api.example.com:443", "10.0.0.5:9000"],
  );
  assert.deepEqual(after.env.filter((n) => !before.env.includes(n)), ["GH_TOKEN", "X_ID", "X_KEY"]);
  assert.deepEqual(after.read, before.read);
  assert.deepEqual(after.write, before.write);
});
