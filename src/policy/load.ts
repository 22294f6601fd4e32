import { parse } from "yaml";
import { POLICY_DIR } from "../paths.ts";
import { describeIssue } from "../validation.ts";
import { type Policy, PolicySchema } from "./schema.ts";

/** A policy that cannot be used; the message names the file and the bad key. */
export class PolicyError extends Error {
  override name = "PolicyError";
}

/** Resolves `MOAT_POLICY`: a path (contains `/` or ends in `.yaml`) or a name in `policies/`. */
export function resolvePolicyPath(nameOrPath: string): string {
  if (nameOrPath.includes("/") || /\.ya?ml$/.test(nameOrPath)) return nameOrPath;
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
    throw new PolicyError(`Policy file ${path} cannot be read: ${(err as Error).message}`);
  }
  return { path, policy: parsePolicy(text, path) };
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
  const problems = parsed.error.issues.map((issue) =>
    describeIssue(issue, { noun: "key", whole: "key '(top level)'" })
  );
  throw new PolicyError(`Policy file ${source} is invalid: ${problems.join("; ")}`);
}
