/**
 * `/mcp`: MCP over Streamable HTTP (src/mcp/http.ts speaks it), documented in the OpenAPI
 * document like every other route, with its three methods; docs/mcp.md is the guide.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import type { Context } from "hono";
import type { McpHttp } from "../mcp/http.ts";
import { tenantOf } from "./principal.ts";
import { errors, serve } from "./openapi.ts";

const GUIDE = "MCP over Streamable HTTP (protocol version 2025-06-18 and earlier ones the SDK " +
  "supports). Use an MCP client rather than calling it by hand; docs/mcp.md in the repository " +
  "shows how to connect one and what the tools do.";

/** A JSON-RPC 2.0 message, as MCP sends them; the SDK validates it. */
const MessageSchema = z.object({
  jsonrpc: z.literal("2.0"),
  method: z.string().optional(),
  id: z.union([z.string(), z.number()]).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
}).loose().meta({
  id: "McpMessage",
  examples: [
    {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "my-agent", version: "1.0" },
      },
    },
    {
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "run_python_code", arguments: { python_code: "print(6 * 7)" } },
    },
  ],
});

const SessionHeader = z.string().meta({
  description: "The `Mcp-Session-Id` the initialize answer gave; every later request sends it.",
});

const messages = {
  description: "JSON-RPC answers: one JSON object, or a stream of `message` events.",
  content: {
    "application/json": { schema: MessageSchema },
    "text/event-stream": { schema: z.string() },
  },
};

/** A JSON-RPC error the transport answers with (not Moat's `{"error": {name, message}}`). */
function rpcError(description: string) {
  return { description, content: { "application/json": { schema: MessageSchema } } };
}

/** POST, GET and DELETE `/mcp`, each handed to the MCP endpoint. */
export function mcpRoutes(mcp: McpHttp): OpenAPIHono {
  const app = new OpenAPIHono();
  const tags = ["mcp"];
  const handle = (c: Context) => mcp.handle(c.req.raw, tenantOf(c));
  serve(app, {
    method: "post",
    path: "/mcp",
    tags,
    summary: "Send MCP messages (initialize first: its answer carries Mcp-Session-Id)",
    description: GUIDE + " Send `Accept: application/json, text/event-stream`.",
    request: {
      headers: z.object({ "mcp-session-id": SessionHeader.optional() }),
      body: {
        description: "One JSON-RPC message (or a batch).",
        required: true,
        content: { "application/json": { schema: MessageSchema } },
      },
    },
    responses: {
      200: messages,
      202: { description: "A notification or response was accepted; nothing to answer." },
      400: rpcError("Not a JSON-RPC message, or not initialize without a session id."),
      ...errors(401),
      404: rpcError("The Mcp-Session-Id ended or never existed: initialize again."),
      406: rpcError("The Accept header does not list application/json and text/event-stream."),
    },
  }, handle);
  serve(app, {
    method: "get",
    path: "/mcp",
    tags,
    summary: "Open the server's stream of messages for an MCP session",
    description: GUIDE + " Send `Accept: text/event-stream`.",
    request: { headers: z.object({ "mcp-session-id": SessionHeader }) },
    responses: {
      200: { description: "Server-sent events.", content: { "text/event-stream": {} } },
      ...errors(401),
      404: rpcError("The Mcp-Session-Id ended or never existed: initialize again."),
    },
  }, handle);
  serve(app, {
    method: "delete",
    path: "/mcp",
    tags,
    summary: "End an MCP session (its Moat session is deleted with it)",
    description: GUIDE,
    request: { headers: z.object({ "mcp-session-id": SessionHeader }) },
    responses: {
      200: { description: "The session ended." },
      ...errors(401),
      404: rpcError("The Mcp-Session-Id ended or never existed."),
    },
  }, handle);
  return app;
}
