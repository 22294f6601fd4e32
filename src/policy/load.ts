import { parse } from "yaml";
import type { z } from "zod";
import { POLICY_DIR } from "../paths.ts";
import { describeIssue } from "../validation.ts";
import { type Policy, PolicySchema } from "./schema.ts";
import { closest } from "./suggest.ts";

/** A policy that cannot be used; the message names the file and the bad key. */
export class PolicyError extends Error {
  override name = "PolicyError";
}

/** Whether `MOAT_POLICY` names a file (contains `/` or ends in `.yaml`) rather than a policy. */
function isPath(nameOrPath: string): boolean {
  return nameOrPath.includes("/") || /\.ya?ml$/.test(nameOrPath);
}

/** Resolves `MOAT_POLICY`: a path (contains `/` or ends in `.yaml`) or a name in `policies/`. */
export function resolvePolicyPath(nameOrPath: string): string {
  if (isPath(nameOrPath)) return nameOrPath;
  if (!/^[A-Za-z0-9_-]+$/.test(nameOrPath)) {
    throw new PolicyError(`MOAT_POLICY '${nameOrPath}' is neither a policy name nor a path`);
  }
  return `${POLICY_DIR}/${nameOrPath}.yaml`;
}

/** Reads and validates a policy file; every problem is reported with its key. */
export async function loadPolicy(nameOrPath: string): Promise<{ path: string; policy: Policy }> {
  const path = resolvePolicyPath(nameOrPath);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound && !isPath(nameOrPath)) {
      throw new PolicyError(await unknownPolicy(nameOrPath));
    }
    throw new PolicyError(`Policy file ${path} cannot be read: ${(err as Error).message}`);
  }
  return { path, policy: parsePolicy(text, path) };
}

/** The names `MOAT_POLICY` may give: the `.yaml` files in policies/. */
export async function policyNames(dir = POLICY_DIR): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".yaml")) names.push(entry.name.slice(0, -5));
  }
  return names.sort();
}

/** `MOAT_POLICY=stict`: says which policies exist, and the likely one. */
async function unknownPolicy(name: string): Promise<string> {
  const names = await policyNames().catch(() => []);
  const guess = closest(name, names);
  return `MOAT_POLICY '${name}' names no policy in ${POLICY_DIR}/ ` +
    `(the policies there: ${names.join(", ") || "none"})` +
    (guess ? `; did you mean '${guess}'?` : "; or give the path of a policy file");
}

/** Validates policy text; `source` names the file in messages. */
export function parsePolicy(text: string, source: string): Policy {
  let raw: unknown;
  try {
    raw = parse(text) ?? {};
  } catch (err) {
    throw new PolicyError(`Policy file ${source} is not valid YAML: ${(err as Error).message}`);
  }
  const parsed = PolicySchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.flatMap(describePolicyIssue);
  throw new PolicyError(`Policy file ${source} is invalid: ${problems.join("; ")}`);
}

/**
 * One line per problem: `unknown key 'limits.timeoutMS'; did you mean 'limits.timeoutMs'?` for
 * a key the schema does not have, else `key 'limits.memoryMb': <what is wrong>`.
 */
function describePolicyIssue(issue: z.core.$ZodIssue): string[] {
  if (issue.code !== "unrecognized_keys") {
    return [describeIssue(issue, { noun: "key", whole: "key '(top level)'" })];
  }
  const known = keysAt(PolicySchema, issue.path);
  return issue.keys.map((key) => {
    const guess = closest(key, known);
    const where = (k: string) => keyPath([...issue.path, k]);
    return `unknown key '${where(key)}'` + (guess ? `; did you mean '${where(guess)}'?` : "");
  });
}

/** `limits.timeoutMs`, `mounts[0].host`. */
function keyPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : `${i ? "." : ""}${String(p)}`)
    .join("");
}

/** The keys the schema accepts for the object at `path` (defaults and lists looked through). */
function keysAt(schema: z.core.$ZodType, path: readonly PropertyKey[]): string[] {
  let def = schema._zod.def as z.core.$ZodTypeDef & Record<string, unknown>;
  const unwrap = () => {
    while (["default", "optional", "nullable", "prefault"].includes(def.type)) {
      def = (def.innerType as z.core.$ZodType)._zod.def as typeof def;
    }
  };
  unwrap();
  for (const step of path) {
    if (def.type === "array" && typeof step === "number") {
      def = (def.element as z.core.$ZodType)._zod.def as typeof def;
    } else if (def.type === "object") {
      const child = (def.shape as Record<string, z.core.$ZodType>)[String(step)];
      if (!child) return [];
      def = child._zod.def as typeof def;
    } else {
      return [];
    }
    unwrap();
  }
  return def.type === "object" ? Object.keys(def.shape as object) : [];
}
