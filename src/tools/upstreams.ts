/**
 * Code mode's side on the host: a client (the official MCP SDK's) of each upstream MCP server the
 * policy's `tools.mcp` names, whose tools become `moat_tools.<server>.<tool>` in the sandbox.
 * Headers are resolved here, from the server's environment, and never leave this thread but
 * towards their server. A server that is down is retried in the background; one that hangs holds
 * up only the call waiting for it.
 */
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/types"
import { McpError, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { McpServer } from "../policy/schema.ts";
import { resolveHeaders, scrub } from "../policy/secrets.ts";
export { envNames, upstreamHosts } from "./grants.ts";
import type { ToolOutcome, UpstreamCaller } from "../sandbox/tool_calls.ts";
import type { UpstreamToolSpec } from "../worker/tool_channel.ts";

/** The longest wait between two attempts to reach a server that is down. */
const MAX_RETRY_MS = 60_000;
/** How long connecting to a server, or listing its tools, may take. */
const SETUP_MS = 10_000;

interface Upstream {
  server: McpServer;
  headers: Record<string, string>;
  /** Texts no error may show (`resolveHeaders`). */
  secrets: string[];
  client?: Client;
  tools: UpstreamToolSpec[];
  retryMs: number;
  timer?: ReturnType<typeof setTimeout>;
}

/** What `Upstreams.connect` takes besides the servers. */
export interface UpstreamOptions {
  /** Reads `${NAME}`s. @default {Deno.env.get} */
  env?: (name: string) => string | undefined;
  /** One JSON line per event (`upstream-unavailable`, `upstream-connected`). */
  log?: (line: string) => void;
  clientInfo?: { name: string; version: string };
}

/** The upstream servers of a policy, connected. */
export class Upstreams implements UpstreamCaller {
  readonly #upstreams = new Map<string, Upstream>();
  readonly #log: (line: string) => void;
  readonly #clientInfo: { name: string; version: string };
  #version = 0;
  #closed = false;

  private constructor(options: UpstreamOptions) {
    this.#log = options.log ?? ((line) => console.error(line));
    this.#clientInfo = options.clientInfo ?? { name: "moat", version: "0.1.0" };
  }

  /**
   * Resolves every server's headers (a variable that is not set stops the start, naming it) and
   * connects to each; one that cannot be reached now is logged and retried in the background.
   */
  static async connect(servers: McpServer[], options: UpstreamOptions = {}): Promise<Upstreams> {
    const env = options.env ?? ((name: string) => Deno.env.get(name));
    const upstreams = new Upstreams(options);
    for (const server of servers) {
      const where = `tools.mcp '${server.name}'`;
      const { headers, secrets } = resolveHeaders(where, server.headers, env);
      upstreams.#upstreams.set(server.name, { server, headers, secrets, tools: [], retryMs: 1000 });
    }
    await Promise.all([...upstreams.#upstreams.values()].map((u) => upstreams.#open(u)));
    return upstreams;
  }

  /** Bumped whenever a server's tools change (it connected, or said its list changed). */
  get version(): number {
    return this.#version;
  }

  /** The name of every server, connected or not. */
  servers(): string[] {
    return [...this.#upstreams.keys()];
  }

  /** Every tool of every connected server. */
  catalog(): UpstreamToolSpec[] {
    return [...this.#upstreams.values()].flatMap((u) => u.tools);
  }

  /** For `run_python_code`'s description: the modules, their functions, how to call them. */
  describe(): string {
    const lines = [...this.#upstreams.values()].map((u) => {
      const names = u.tools.map((t) => `${identifier(t.name)}(…)`).join(", ");
      return `- moat_tools.${u.server.name}: ${names || "(not connected yet)"}`;
    });
    if (lines.length === 0) return "";
    return "Tools that run outside the sandbox are callable from this code as plain functions " +
      "(code mode):\n" + lines.join("\n") + "\nImport them with `from moat_tools import " +
      "<module>` and call them with keyword arguments; results are JSON values (dicts, lists, " +
      "strings); a failed tool raises ToolError; help(<module>.<function>) shows what a tool does.";
  }

  /** Calls one tool; never throws: every failure is `{error}`, with no header value in it. */
  async call(
    server: string,
    name: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<ToolOutcome> {
    const upstream = this.#upstreams.get(server);
    if (!upstream?.tools.some((t) => t.name === name)) {
      return { error: `no tool ${server}.${name}` };
    }
    const client = upstream.client;
    if (!client) return { error: `upstream '${server}' is not reachable now` };
    try {
      const result = await client.callTool(
        { name, arguments: args },
        undefined,
        { timeout: timeoutMs, signal },
      );
      const text = (result.content as { type: string; text?: string }[] ?? [])
        .filter((c) => c.type === "text").map((c) => c.text ?? "").join("\n");
      // The server's own words may echo what it was sent.
      if (result.isError) {
        return { error: this.#scrub(upstream, text || `${server}.${name} failed`) };
      }
      return { result: result.structuredContent ?? text };
    } catch (err) {
      // Not an answer (a JSON-RPC error or the deadline) and not the caller giving up: the
      // server is unreachable or has forgotten the session (a 404 after it restarted), so it
      // is reconnected with a new session rather than failing every later call the same way.
      if (!(err instanceof McpError) && !signal?.aborted && upstream.client === client) {
        this.#down(upstream, client, err);
      }
      return {
        error: this.#scrub(upstream, `${server}.${name}: ${(err as Error)?.message ?? err}`),
      };
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const u of this.#upstreams.values()) {
      clearTimeout(u.timer);
      await u.client?.close().catch(() => {});
    }
  }

  /** Connects (or reconnects) to one server and lists its tools. */
  async #open(upstream: Upstream): Promise<void> {
    const { server } = upstream;
    const client = new Client(this.#clientInfo, { capabilities: {} });
    try {
      const transport = new StreamableHTTPClientTransport(new URL(server.url), {
        requestInit: { headers: upstream.headers },
      });
      await client.connect(transport, { timeout: SETUP_MS });
      // Closed while this (re)connection was under way: nothing may outlive `close`.
      if (this.#closed) {
        await client.close();
        return;
      }
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
        this.#list(upstream, client).catch((err) => this.#down(upstream, client, err));
      });
      client.onclose = () => {
        if (upstream.client === client) this.#down(upstream, client, new Error("it closed"));
      };
      await this.#list(upstream, client);
      if (this.#closed) {
        await client.close();
        return;
      }
      upstream.client = client;
      upstream.retryMs = 1000;
      this.#log(JSON.stringify({
        event: "upstream-connected",
        server: server.name,
        tools: upstream.tools.length,
      }));
    } catch (err) {
      this.#down(upstream, client, err);
    }
  }

  /** Lists a server's tools (every page) into the catalog. */
  async #list(upstream: Upstream, client: Client): Promise<void> {
    const tools: UpstreamToolSpec[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : undefined, { timeout: SETUP_MS });
      for (const tool of page.tools) {
        tools.push({
          server: upstream.server.name,
          name: tool.name,
          description: tool.description ?? "",
          parameters: tool.inputSchema as Record<string, unknown>,
        });
      }
      cursor = page.nextCursor;
    } while (cursor);
    upstream.tools = tools;
    this.#version++;
  }

  /** A server went away or could not be reached: logged, its tools gone, retried later. */
  #down(upstream: Upstream, client: Client, err: unknown): void {
    if (this.#closed) return;
    if (upstream.client === client || !upstream.client) {
      upstream.client = undefined;
      if (upstream.tools.length) this.#version++;
      upstream.tools = [];
    }
    client.close().catch(() => {});
    const message = this.#scrub(upstream, String((err as Error)?.message ?? err));
    this.#log(JSON.stringify({
      event: "upstream-unavailable",
      server: upstream.server.name,
      message,
      retryInMs: upstream.retryMs,
    }));
    clearTimeout(upstream.timer);
    upstream.timer = setTimeout(() => this.#open(upstream), upstream.retryMs);
    Deno.unrefTimer(upstream.timer);
    upstream.retryMs = Math.min(upstream.retryMs * 2, MAX_RETRY_MS);
  }

  /** An error's text without any header value (a token the server echoed back, say). */
  #scrub(upstream: Upstream, text: string): string {
    return scrub(text, upstream.secrets);
  }
}

/** An upstream tool's name as the sandbox's function name (as `lockdown.py` makes it). */
function identifier(name: string): string {
  const ident = name.replace(/\W/g, "_");
  return /^\d/.test(ident) || !ident ? `_${ident}` : ident;
}
