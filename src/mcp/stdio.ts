/**
 * MCP over stdio (`deno task mcp`), for hosts that launch a command: one MCP session, one Moat
 * session, for the life of the process. stdout carries only the protocol (main.ts sends the
 * audit trail to stderr in this mode).
 */
import process from "node:process";
import { StdioServerTransport } from "./sdk.ts";
import { ErrorCode, type JSONRPCMessage } from "./sdk.ts";
import type { Policy } from "../policy/schema.ts";
import type { SessionManager } from "../session/manager.ts";
import { MoatSessionBinding } from "./binding.ts";
import type { ReturnMode } from "./format.ts";
import { createMcpServer } from "./tools.ts";

/** What the stdio server is built with. */
export interface StdioOptions {
  sessions: SessionManager;
  policy: Policy;
  /** @default {"xml"} */
  returnMode?: ReturnMode;
  /** Code mode: the upstream servers' modules, for `run_python_code`'s description. */
  codeMode?: () => string;
}

/**
 * Serves MCP on stdin/stdout until the host closes stdin (or `stop` is called), then deletes
 * the session's interpreter.
 */
export async function serveStdio(
  options: StdioOptions,
): Promise<{ stop: () => Promise<void>; done: Promise<void> }> {
  const binding = new MoatSessionBinding(options.sessions, options.policy.limits.idleTtlSeconds);
  const server = createMcpServer(binding, {
    returnMode: options.returnMode ?? "xml",
    limits: options.policy.limits,
    codeMode: options.codeMode,
  });
  const transport = new StdioServerTransport();
  const done = Promise.withResolvers<void>();
  transport.onclose = () => {
    binding.close();
    done.resolve();
  };
  // A line that is not a JSON-RPC message gets a JSON-RPC error, as over HTTP, not silence.
  transport.onerror = (error) => {
    if (!(error instanceof SyntaxError || error.name === "ZodError")) return;
    const reply = {
      jsonrpc: "2.0",
      id: null,
      error: { code: ErrorCode.ParseError, message: `Parse error: ${firstLine(error.message)}` },
    } as unknown as JSONRPCMessage;
    transport.send(reply).catch(() => {});
  };
  await server.connect(transport);
  process.stdin.on("end", () => void server.close());
  return { stop: () => server.close(), done: done.promise };
}

function firstLine(text: string): string {
  return text.split("\n")[0].slice(0, 200);
}
