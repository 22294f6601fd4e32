/**
 * A real upstream MCP server on loopback (the SDK's server over Streamable HTTP) for code mode's
 * tests and bench: tools that answer with structured content, text, an error, never, and one
 * that reports the Authorization header it received. It records every request's headers.
 */
import {
  type CallToolRequest,
  ListToolsRequestSchema,
  Server,
  type Tool,
  WebStandardStreamableHTTPServerTransport,
} from "../../src/mcp/sdk.ts";
// @ts-types="@modelcontextprotocol/sdk/types"
import { CallToolRequestSchema } from "@modelcontextprotocol/sdk/types.js";

export interface Upstream extends AsyncDisposable {
  url: string;
  /** The Authorization header of every request received. */
  authorizations: (string | null)[];
  /** Adds a tool and tells connected clients (`notifications/tools/list_changed`). */
  addTool(tool: Tool, answer: (args: Record<string, unknown>) => unknown): Promise<void>;
}

type Answer = (args: Record<string, unknown>) => unknown;

const TOOLS: [Tool, Answer][] = [
  [{
    name: "echo",
    description: "Returns n.",
    inputSchema: { type: "object", properties: { n: { type: "integer" } } },
  }, (args) => ({ structuredContent: { n: args.n }, content: [] })],
  [{
    name: "search-repos",
    description: "Searches repositories by query.",
    inputSchema: {
      type: "object",
      properties: { query: { type: "string", description: "what to look for" } },
      required: ["query"],
    },
  }, (args) => ({ content: [{ type: "text", text: `found: ${args.query}` }] })],
  [{
    name: "fail",
    description: "Always fails.",
    inputSchema: { type: "object", properties: {} },
  }, () => ({ isError: true, content: [{ type: "text", text: "upstream says no" }] })],
  [{
    name: "hang",
    description: "Never answers.",
    inputSchema: { type: "object", properties: {} },
  }, () => new Promise(() => {})],
  [{
    name: "whoami",
    description: "The Authorization header this call came with.",
    inputSchema: { type: "object", properties: {} },
  }, () => ({ content: [{ type: "text", text: "see the server's record" }] })],
];

/** Starts the upstream server on loopback, on `port` (default: a free one). */
export function startUpstream(port = 0): Upstream {
  const tools = new Map(TOOLS.map(([tool, answer]) => [tool.name, { tool, answer }]));
  const servers = new Set<Server>();
  const transports = new Map<string, WebStandardStreamableHTTPServerTransport>();
  const authorizations: (string | null)[] = [];
  const newServer = () => {
    const server = new Server(
      { name: "upstream-test", version: "1.0.0" },
      { capabilities: { tools: { listChanged: true } } },
    );
    server.setRequestHandler(ListToolsRequestSchema, () => ({
      tools: [...tools.values()].map((t) => t.tool),
    }));
    server.setRequestHandler(CallToolRequestSchema, async (request: CallToolRequest) => {
      const entry = tools.get(request.params.name);
      if (!entry) throw new Error(`no tool ${request.params.name}`);
      return await entry.answer(request.params.arguments ?? {}) as Record<string, unknown>;
    });
    servers.add(server);
    return server;
  };
  const http = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (req) => {
    authorizations.push(req.headers.get("authorization"));
    const sid = req.headers.get("mcp-session-id");
    if (sid) {
      const transport = transports.get(sid);
      if (!transport) return new Response("unknown session", { status: 404 });
      return await transport.handleRequest(req);
    }
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (id) => void transports.set(id, transport),
      });
    await newServer().connect(transport);
    return await transport.handleRequest(req);
  });
  return {
    url: `http://127.0.0.1:${http.addr.port}/mcp`,
    authorizations,
    async addTool(tool, answer) {
      tools.set(tool.name, { tool, answer });
      await Promise.all([...servers].map((s) => s.sendToolListChanged().catch(() => {})));
    },
    async [Symbol.asyncDispose]() {
      for (const transport of transports.values()) await transport.close().catch(() => {});
      for (const server of servers) await server.close().catch(() => {});
      await http.shutdown();
    },
  };
}
