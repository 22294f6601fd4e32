/**
 * The MCP server's tools: `run_python_code` (a drop-in for pydantic's mcp-run-python, plus
 * state, packages and limits) and `reset_session`. One `Server` per MCP session, whatever the
 * transport; every call goes through SessionManager.exec, so the policy applies as over HTTP.
 */
import { Server } from "./sdk.ts";
import {
  type CallToolRequest,
  type CallToolResult,
  ErrorCode,
  ListToolsRequestSchema,
  type LoggingLevel,
  SetLevelRequestSchema,
  type Tool,
} from "./sdk.ts";
import { z } from "zod";
import { MoatError } from "../errors.ts";
import type { Limits } from "../policy/schema.ts";
import { type CallRunner, SessionExpired } from "./binding.ts";
import { outcomeOf, outputLines, parseAnswer, render, type ReturnMode } from "./format.ts";

/** What every MCP session's server is built with. */
export interface ToolOptions {
  /** mcp-run-python's return mode. @default {"xml"} */
  returnMode: ReturnMode;
  /** The policy's limits, stated in the tool's description. */
  limits: Pick<Limits, "timeoutMs" | "memoryMb">;
  /** Code mode: the upstream servers' modules, listed in the description (asked each time). */
  codeMode?: () => string;
}

/** The name and version MCP hosts show for this server. */
export const SERVER_INFO = { name: "moat", version: "0.1.0" };

const DRAFT_07 = "http://json-schema.org/draft-07/schema#";

/** mcp-run-python's first paragraphs, word for word; Moat's additions follow. */
function description(limits: ToolOptions["limits"], codeMode?: () => string): string {
  const modules = codeMode?.();
  return `${baseDescription(limits)}${modules ? `\n${modules}` : ""}`;
}

function baseDescription(limits: ToolOptions["limits"]): string {
  return `Tool to execute Python code and return stdout, stderr, and return value.

The code may be async, and the value on the last line will be returned as the return value.

The code will be executed with Python 3.14 (Pyodide, in a sandbox without network or host \
files). Variables, imports and definitions persist between calls of this session; call \
reset_session to start clean. List the packages the code needs in \`packages\` (e.g. \
["numpy", "pandas"]); the server's policy decides which may load. A call may run for \
${limits.timeoutMs / 1000} s and use ${limits.memoryMb} MiB of memory; an object with \
_repr_png_ (a PIL image, a matplotlib figure) returned on the last line comes back as an image.
`;
}

/** The tools as `tools/list` shows them; the input schema is mcp-run-python's, plus `packages`. */
export function toolList(options: ToolOptions): Tool[] {
  return [
    {
      name: "run_python_code",
      title: "Run Python code",
      description: description(options.limits, options.codeMode),
      inputSchema: {
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
        $schema: DRAFT_07,
      },
    },
    {
      name: "reset_session",
      title: "Reset the Python session",
      description: "Discards every variable, import and definition of this session's Python " +
        "interpreter, so the next run_python_code call starts from a clean interpreter.",
      inputSchema: {
        type: "object",
        properties: {},
        additionalProperties: false,
        $schema: DRAFT_07,
      },
    },
  ];
}

const RunArgs = z.strictObject({
  python_code: z.string({
    error: (i) => i.input === undefined ? "is required" : "must be a string of Python source",
  }),
  global_variables: z.record(z.string(), z.unknown(), {
    error: "must be an object mapping names to JSON values",
  }).default({}),
  packages: z.array(z.string({ error: "must be a list of strings" }), {
    error: "must be a list of strings",
  }).default([]),
}, {
  error: (i) => i.code === "unrecognized_keys" ? `is not an argument of this tool` : undefined,
});

const ResetArgs = z.strictObject({}, { error: "is not an argument of this tool" });

/** Valid arguments, or a JSON-RPC invalid-params error naming the bad one. */
function parseArgs<T extends z.ZodType>(schema: T, tool: string, args: unknown): z.infer<T> {
  const parsed = schema.safeParse(args ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const names = issue.code === "unrecognized_keys" ? issue.keys : [issue.path.join(".")];
  const which = names.map((n) => `'${n}'`).join(", ");
  throw new InvalidParams(
    `Invalid arguments for tool ${tool}: argument ${which} ${issue.message}`,
  );
}

/** Python that sets `global_variables` in the session's globals (a JSON text literal). */
function setGlobalsCode(globals: Record<string, unknown>): string {
  return `globals().update(__import__("json").loads(${JSON.stringify(JSON.stringify(globals))}))`;
}

/**
 * A JSON-RPC invalid-params error. (The SDK's McpError puts "MCP error -32602:" into its
 * message, which the client's McpError then repeats.)
 */
export class InvalidParams extends Error {
  override name = "InvalidParams";
  readonly code = ErrorCode.InvalidParams;
}

const LEVELS: LoggingLevel[] = [
  "debug",
  "info",
  "notice",
  "warning",
  "error",
  "critical",
  "alert",
  "emergency",
];

function text(body: string, isError = false): CallToolResult {
  return { content: [{ type: "text", text: body }], ...(isError ? { isError } : {}) };
}

/**
 * `tools/call` as the handler is registered: the SDK parses a request with the registered schema
 * before anything else and turns a failure into -32603 (internal error), so arguments of the
 * wrong type (an array, a string) would read as Moat's fault. Registered loosely, the request
 * reaches the SDK's own tools/call check, which answers -32602 (invalid params).
 */
const LooseCallToolRequest = z.looseObject({
  method: z.literal("tools/call"),
  params: z.looseObject({}),
});

/** An MCP server for one session: its tools run in `runner`'s Moat session. */
export function createMcpServer(runner: CallRunner, options: ToolOptions): Server {
  const server = new Server(SERVER_INFO, {
    capabilities: { tools: {}, logging: {} },
    instructions: 'Call the "run_python_code" tool with the Python code to run. State persists ' +
      'between calls; "reset_session" starts clean.',
  });
  const tools = toolList(options);
  // Output is sent as logging notifications unless the host asked for a level above it.
  let level: LoggingLevel = "debug";
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    level = request.params.level;
    return {};
  });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools }));
  server.setRequestHandler(LooseCallToolRequest, async (request, extra) => {
    const { name, arguments: args } = (request as CallToolRequest).params;
    try {
      if (name === "run_python_code") {
        const notes: Promise<void>[] = [];
        const onOutput = (stream: "stdout" | "stderr", data: string) => {
          const at = stream === "stdout" ? "info" : "warning";
          if (LEVELS.indexOf(at) < LEVELS.indexOf(level)) return;
          const params = { level: at, logger: stream, data };
          notes.push(
            extra.sendNotification({ method: "notifications/message", params }).catch(() => {}),
          );
        };
        try {
          return await runPythonCode(runner, parseArgs(RunArgs, name, args), options, onOutput);
        } finally {
          await Promise.all(notes); // sent before the result, on the call's own stream
        }
      }
      if (name === "reset_session") {
        parseArgs(ResetArgs, name, args);
        await runner.reset();
        return text("The session was reset: the next call starts from a clean interpreter.");
      }
    } catch (err) {
      // The server is full, shutting down, or the session expired: the model is told why.
      if (err instanceof MoatError || err instanceof SessionExpired) {
        return text(`${err.name}: ${err.message}`, true);
      }
      throw err;
    }
    const names = tools.map((t) => t.name).join(", ");
    throw new InvalidParams(`Unknown tool '${name}'; this server has ${names}`);
  });
  return server;
}

/** One `run_python_code` call: packages and globals first, then the code, in one session. */
async function runPythonCode(
  runner: CallRunner,
  args: z.infer<typeof RunArgs>,
  options: ToolOptions,
  onOutput: (stream: "stdout" | "stderr", text: string) => void,
): Promise<CallToolResult> {
  const mode = options.returnMode;
  const hasGlobals = Object.keys(args.global_variables).length > 0;
  if (args.packages.length > 0 || hasGlobals) {
    // mcp-run-python installs before it runs: code whose packages failed is not run at all.
    const prelude = await runner.exec({
      code: hasGlobals ? setGlobalsCode(args.global_variables) : "",
      packages: args.packages,
    });
    const parsed = JSON.parse(prelude.body);
    const failed: { name: string; reason: string }[] = parsed.packages?.failed ?? [];
    if (failed.length > 0) {
      const error = failed.map((f) => `package '${f.name}' was not loaded: ${f.reason}\n`).join("");
      return text(render({ status: "install-error", output: [], error }, mode));
    }
    if (parsed.error) {
      const output = outputLines(parsed.stdout, "");
      return text(render({ status: "run-error", output, error: parsed.error.message }, mode));
    }
  }
  const answer = await runner.exec({ code: args.python_code, onOutput });
  const { outcome, image } = outcomeOf(parseAnswer(answer.body), mode);
  const result = text(render(outcome, mode));
  if (image) result.content.push({ type: "image", ...image });
  return result;
}
