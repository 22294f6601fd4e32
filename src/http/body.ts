import type { Context } from "hono";
import { z } from "zod";
import { BadRequest } from "../errors.ts";

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
  const field = issue.path.length ? `Field '${issue.path.join(".")}'` : "The request body";
  throw new BadRequest(`${field}: ${issue.message}`);
}

/** Module names and `pkg.*` patterns, as smolagents writes them, or `*` for no rule. */
export const AuthorizedImportsSchema = z.array(
  z.string({ error: "must be a list of module names" }).regex(
    /^(\*|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*)?)$/,
    "must be a list of module names ('numpy', 'numpy.linalg'), patterns ('numpy.*') or '*'",
  ),
  { error: "must be a list of module names" },
).max(1000, "must list at most 1000 names");

/** The body of an execute call (PROTOCOL.md §1). */
export const ExecBodySchema = z.object({
  code: z.string({
    error: (i) => i.input === undefined ? "is required" : "must be a string of Python source",
  }),
  packages: z.array(z.string({ error: "must be a list of strings" }), {
    error: "must be a list of strings",
  }).optional(),
  timeoutMs: z.number({ error: "must be a number of milliseconds" }).int().positive().optional(),
  authorizedImports: AuthorizedImportsSchema.optional(),
}, { error: "must be a JSON object" });
