/**
 * MCP over Streamable HTTP at `/mcp`, on the app's port behind its bearer token: stateful (the
 * `Mcp-Session-Id` header), POST for messages, GET for the server's stream, DELETE to end the
 * session (which deletes its Moat session). The SDK's web-standard transport does the protocol.
 */
import { WebStandardStreamableHTTPServerTransport } from "./sdk.ts";
import type { Server } from "./sdk.ts";
import type { Policy } from "../policy/schema.ts";
import type { SessionManager } from "../session/manager.ts";
import { MoatSessionBinding } from "./binding.ts";
import type { ReturnMode } from "./format.ts";
import { createMcpServer } from "./tools.ts";
import { mcpSessionId } from "../cluster/forward.ts";

/** What the `/mcp` endpoint is built with. */
export interface McpHttpOptions {
  sessions: SessionManager;
  policy: Policy;
  /** @default {"xml"} */
  returnMode?: ReturnMode;
  /** Code mode: the upstream servers' modules, for `run_python_code`'s description. */
  codeMode?: () => string;
  /**
   * A tenant's own policy and code mode (`MOAT_TENANTS`), for its MCP sessions' descriptions and
   * clocks; undefined: the server's.
   */
  tenantScope?: (tenant: string) => { policy: Policy; codeMode?: () => string } | undefined;
  /**
   * This instance's id, at the head of each MCP session id so that any instance of a deployment
   * can pass a request to the one holding the session (src/cluster/forward.ts). @default {"local"}
   */
  instanceId?: string;
}

/** An MCP session that has called no tool ends after this long unused (or sooner, by policy). */
export const UNUSED_TTL_MS = 60_000;

interface Entry {
  /** The tenant that opened it; absent: the operator. Nobody else reaches it. */
  tenant?: string;
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  binding: MoatSessionBinding;
  lastUsed: number;
}

/** The MCP sessions of one HTTP server, each bound to its own Moat session. */
export class McpHttp {
  readonly #entries = new Map<string, Entry>();
  readonly #sweeper: ReturnType<typeof setInterval>;

  constructor(private readonly options: McpHttpOptions) {
    const ttl = options.policy.limits.idleTtlSeconds * 1000;
    const unused = Math.min(UNUSED_TTL_MS, ttl);
    this.#sweeper = setInterval(() => this.sweep(ttl), Math.min(unused / 4, 15_000));
    Deno.unrefTimer(this.#sweeper);
  }

  /** How many MCP sessions are open. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Serves one request to `/mcp` of `tenant` (absent: the operator). Another tenant's MCP
   * session answers as one that does not exist.
   */
  async handle(request: Request, tenant?: string): Promise<Response> {
    const id = request.headers.get("mcp-session-id");
    if (id !== null) {
      const entry = this.#entries.get(id);
      if (!entry || (tenant !== undefined && entry.tenant !== tenant)) return notFound(id);
      entry.lastUsed = Date.now();
      return await entry.transport.handleRequest(request);
    }
    // No session yet: the transport accepts only an initialize request and answers the rest.
    const cap = this.options.policy.limits.mcpSessions;
    if (this.#entries.size >= cap) return full(cap);
    const own = tenant === undefined ? undefined : this.options.tenantScope?.(tenant);
    const { limits } = (own ?? this.options).policy;
    const binding = new MoatSessionBinding(this.options.sessions, limits.idleTtlSeconds, tenant);
    const server = createMcpServer(binding, {
      returnMode: this.options.returnMode ?? "xml",
      limits,
      codeMode: own ? own.codeMode : this.options.codeMode,
    });
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => mcpSessionId(this.options.instanceId ?? "local"),
        maxRequestBodySize: this.options.policy.limits.bodyBytes,
        onsessioninitialized: (sid) => {
          this.#entries.set(sid, { tenant, transport, server, binding, lastUsed: Date.now() });
        },
        onsessionclosed: (sid) => this.#end(sid),
      });
    await server.connect(transport);
    const response = await transport.handleRequest(request);
    if (transport.sessionId === undefined) await server.close();
    return response;
  }

  /**
   * Ends MCP sessions unused for `ttlMs` (their Moat sessions expire on the same clock), and
   * sooner, after `UNUSED_TTL_MS`, those that never called a tool: a client that only
   * initializes holds nothing worth keeping.
   */
  sweep(ttlMs: number, now = Date.now()): void {
    const unused = Math.min(UNUSED_TTL_MS, ttlMs);
    for (const [id, entry] of this.#entries) {
      const idle = now - entry.lastUsed;
      if (idle > ttlMs || (entry.binding.id === undefined && idle > unused)) this.#end(id);
    }
  }

  /** Ends every MCP session and closes its streams, so that the HTTP server can stop. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all([...this.#entries.keys()].map((id) => this.#end(id)));
  }

  async #end(id: string): Promise<void> {
    const entry = this.#entries.get(id);
    if (!entry) return;
    this.#entries.delete(id);
    entry.binding.close();
    await entry.server.close().catch(() => {});
  }
}

/** Past `limits.mcpSessions`: a JSON-RPC error the host can show, with a time to retry. */
function full(cap: number): Response {
  const message = `Too many MCP sessions: this server holds ${cap} (the policy's ` +
    `limits.mcpSessions); end one (DELETE /mcp with its Mcp-Session-Id) or retry later`;
  return Response.json({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }, {
    status: 503,
    headers: { "retry-after": "5" },
  });
}

/**
 * The spec's answer to an unknown or ended session: 404, so the client initializes again (the
 * SDK's transport answers it the same way for a session it holds; this one it never held).
 */
function notFound(id: string): Response {
  const message = `Session not found: MCP session '${id}' ended or never existed; initialize again`;
  return Response.json({ jsonrpc: "2.0", error: { code: -32001, message }, id: null }, {
    status: 404,
  });
}
