import type { Context } from "hono";
import { z } from "zod";
import { BadRequest } from "../errors.ts";
import { describeIssue } from "../validation.ts";

/** Reads a JSON body of any content type and validates it; 400 names the bad field. */
export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = text.trim() === "" ? undefined : JSON.parse(text);
  } catch (err) {
    throw new BadRequest(`The request body is not valid JSON: ${(err as Error).message}`);
  }
  if (raw === undefined) throw new BadRequest("The request body is empty; expected a JSON object");
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new BadRequest(describeIssue(issue, { noun: "Field", whole: "The request body" }));
}

/**
 * A call may not ask for more time than the policy allows: refused with 400 naming the limit,
 * rather than quietly run with less than it asked for.
 */
export function checkTimeout(timeoutMs: number | undefined, maxTimeoutMs: number): void {
  if (timeoutMs !== undefined && timeoutMs > maxTimeoutMs) {
    throw new BadRequest(
      `timeoutMs ${timeoutMs} is above this server's limit (limits.maxTimeoutMs: ${maxTimeoutMs})`,
    );
  }
}

/** Module names and `pkg.*` patterns, as smolagents writes them, or `*` for no rule. */
export const AuthorizedImportsSchema = z.array(
  z.string({ error: "must be a list of module names" }).regex(
    /^(\*|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*)?)$/,
    "must be a list of module names ('numpy', 'numpy.linalg'), patterns ('numpy.*') or '*'",
  ),
  { error: "must be a list of module names" },
).max(1000, "must list at most 1000 names");

/** Python's keywords: a tool of one of these names could not be called. */
const PY_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except " +
    "finally for from global if import in is lambda nonlocal not or pass raise return try while " +
    "with yield").split(" "),
);

/** One host tool of an execute call (PROTOCOL.md §6), as OpenAI and MCP define tools. */
export const ToolSchema = z.looseObject({
  name: z.string({ error: "must be a string" }).max(64, "must be at most 64 characters").regex(
    /^[A-Za-z][A-Za-z0-9_]*$/,
    "must be a Python identifier (letters, digits, _) not starting with '_'",
  ).refine((n) => !PY_KEYWORDS.has(n), "must not be a Python keyword"),
  description: z.string({ error: "must be a string" }).max(16_384).default(""),
  parameters: z.looseObject({
    properties: z.record(z.string(), z.unknown(), {
      error: "must be an object of JSON Schemas",
    }).optional(),
    required: z.array(z.string(), { error: "must be a list of names" }).optional(),
  }, { error: "must be a JSON Schema object" }).default({ type: "object", properties: {} }),
}, { error: "must be an object with name, description and parameters" }).transform((t) => ({
  name: t.name,
  description: t.description,
  parameters: t.parameters as Record<string, unknown>,
}));

/** The tools of one call: at most 128, each name once. */
export const ToolsSchema = z.array(ToolSchema, { error: "must be a list of tools" })
  .max(128, "must list at most 128 tools")
  .superRefine((tools, ctx) => {
    const seen = new Set<string>();
    tools.forEach((t, i) => {
      if (seen.has(t.name)) {
        ctx.addIssue({ code: "custom", path: [i, "name"], message: `'${t.name}' is named twice` });
      }
      seen.add(t.name);
    });
  });

/** The body of `POST …/tool-results`: the answer to one `tool_call` event. */
export const ToolResultSchema = z.object({
  id: z.string({ error: "must be the id of a tool_call event" }).min(1).max(100),
  result: z.unknown().optional().meta({ description: "The tool's result, any JSON value." }),
  error: z.string({ error: "must be a string" }).optional().meta({
    description: "Why the tool failed: Python gets a ToolError with this text.",
  }),
}, {
  error: (i) =>
    i.code === "unrecognized_keys"
      ? "must hold only id and one of result or error"
      : "must be a JSON object",
}).strict()
  .refine(
    (b) => ("result" in b) !== ("error" in b),
    "The request body must hold exactly one of result or error",
  ).meta({
    id: "ToolResult",
    examples: [{ id: "6f1c…", result: { temperature: 21 } }, { id: "6f1c…", error: "quota" }],
  });

/** The body of an execute call (PROTOCOL.md §1); its examples are in the OpenAPI document. */
export const ExecBodySchema = z.object({
  code: z.string({
    error: (i) => i.input === undefined ? "is required" : "must be a string of Python source",
  }).meta({ description: "Python source; the value of its last expression is the `result`." }),
  packages: z.array(z.string({ error: "must be a list of strings" }), {
    error: "must be a list of strings",
  }).optional().meta({
    description: "Distribution or import names to load first (standard-library names and " +
      "wildcards are skipped), as smolagents sends its authorized imports.",
  }),
  timeoutMs: z.number({ error: "must be a number of milliseconds" }).int().positive().optional()
    .meta({
      description: "Time limit of this call, up to the policy's `limits.maxTimeoutMs`; a larger " +
        "value is refused with 400 (BadRequest), naming the limit.",
    }),
  authorizedImports: AuthorizedImportsSchema.optional().meta({
    description: "Modules (and `pkg.*` patterns) the code may import beyond smolagents' " +
      "standard ones, enforced in the sandbox; overrides the session's list; `['*']`: no rule.",
  }),
  tools: ToolsSchema.optional().meta({
    description: "Host tools: each is a synchronous Python function for this call; calling one " +
      "emits a `tool_call` event on a streamed call, answered with `POST …/tool-results`.",
  }),
  checkpoint: z.literal("sync", { error: "must be 'sync' when given" }).optional().meta({
    description: "`sync`: answer only once the session's checkpoint with this call's state is " +
      "stored (durable sessions); otherwise checkpoints are taken soon after, off the answer's path.",
  }),
}, { error: "must be a JSON object" }).meta({
  id: "ExecRequest",
  examples: [
    { code: 'x = 6 * 7\nprint("hi")\nx', packages: [] },
    { code: "import math\nmath.factorial(30)", packages: ["math", "numpy.*"] },
    { code: "sum(range(10**6))", timeoutMs: 5000 },
    { code: "state = {'step': 1}", checkpoint: "sync" },
  ],
});
