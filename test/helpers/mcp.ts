/**
 * Real MCP clients (the TypeScript SDK's) for the real server: over Streamable HTTP to a
 * TestServer's `/mcp`, and over stdio to `deno task mcp`'s exact command.
 */
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/stdio"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { flagsForSettings } from "../../scripts/flags.ts";
import { loopbackOnly, startEnv, type TestServer } from "./server.ts";

export { Client, StdioClientTransport, StreamableHTTPClientTransport };

/** A host's first JSON-RPC request, for callers that speak `/mcp` by hand (add `jsonrpc`, `id`). */
export const INITIALIZE = {
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "moat-test", version: "1" },
  },
};

const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * An MCP client connected to `server`'s `/mcp` with its token. `await using` ends the MCP
 * session (DELETE), as a well-behaved host does, then closes the client.
 */
export async function httpClient(
  server: TestServer,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport } & AsyncDisposable> {
  const client = new Client({ name: "moat-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${server.token}` } },
  });
  await client.connect(transport);
  return {
    client,
    transport,
    [Symbol.asyncDispose]: async () => {
      await transport.terminateSession().catch(() => {});
      await client.close();
    },
  };
}

/**
 * The `deno run` arguments of `deno task mcp` for these settings: `deno run $(flags) main.ts
 * --stdio`, flags derived as for `deno task start`, the network narrowed to loopback.
 */
export async function stdioArgs(env: Record<string, string>): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const task: string = config.tasks.mcp.replace(/^deno install --quiet && /, "");
  if (
    !/^(\S+=\S* )*deno run \$\(deno run .*scripts\/flags\.ts --start\) main\.ts --stdio$/.test(task)
  ) {
    throw new Error(
      "the mcp task must be 'deno run $(deno run … scripts/flags.ts --start) main.ts --stdio'",
    );
  }
  const flags = await flagsForSettings((name) => env[name], () => {});
  return ["run", ...flags.map(loopbackOnly), "main.ts", "--stdio"];
}

/** The environment `deno task mcp` runs the server with, for a policy file or name. */
export async function stdioEnv(policy: string, extra: Record<string, string> = {}) {
  return {
    ...(await startEnv()).env,
    MOAT_POLICY: policy,
    MOAT_TOKEN: "stdio-token-0123456789abcdef",
    NO_COLOR: "1",
    ...extra,
  };
}

/** An MCP client that launched Moat as a stdio server; stderr is collected in `stderr()`. */
export async function stdioClient(
  policy: string,
  extraEnv: Record<string, string> = {},
): Promise<{ client: Client; stderr: () => string; errors: Error[] } & AsyncDisposable> {
  const env = await stdioEnv(policy, extraEnv);
  const transport = new StdioClientTransport({
    command: Deno.execPath(),
    args: await stdioArgs(env),
    env,
    cwd: ROOT,
    stderr: "pipe",
  });
  let stderr = "";
  const decoder = new TextDecoder();
  transport.stderr?.on("data", (chunk: Uint8Array) => stderr += decoder.decode(chunk));
  const client = new Client({ name: "moat-test", version: "1.0.0" });
  const errors: Error[] = [];
  client.onerror = (err: Error) => errors.push(err);
  await client.connect(transport, { timeout: 120_000 });
  return {
    client,
    stderr: () => stderr,
    errors,
    [Symbol.asyncDispose]: () => client.close(),
  };
}
