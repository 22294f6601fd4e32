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
