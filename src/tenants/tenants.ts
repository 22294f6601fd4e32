/**
 * Tenants (`MOAT_TENANTS`, PROTOCOL.md §6): a YAML file of `{name, token, policy, limits}`. Each
 * tenant's token reaches only its own sessions; `MOAT_TOKEN` stays the operator's, which sees
 * all. Tokens are kept as SHA-256 digests and a bearer token is compared with every one of them
 * and the operator's, whole, so the time taken tells nobody which tenant was close.
 */
import { createHash } from "node:crypto";
import { parse } from "yaml";
import { z } from "zod";
import { loadPolicy, resolvePolicyPath } from "../policy/load.ts";
import type { Policy } from "../policy/schema.ts";
import { sameBytes } from "../digest.ts";
import { describeIssue } from "../validation.ts";

/** A tenant's quotas, on top of the server's policy limits. */
export const TenantLimitsSchema = z.object({
  /** Sessions the tenant may hold at once on an instance (its default session included). */
  sessions: z.number().int().positive().optional(),
  /** Sessions of the tenant the store keeps (live and hibernated). */
  storedSessions: z.number().int().positive().optional(),
  /** Calls (and other session requests) per minute, as a token bucket refilled evenly. */
  callsPerMinute: z.number().int().positive().optional(),
}).strict();

export const TenantSchema = z.object({
  /** Lower case letters, digits, `-` and `_`: it names the tenant in logs and metrics. */
  name: z.string().regex(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    "must be 1-63 lower-case letters, digits, '-' or '_'",
  ),
  /** `${NAME}` (read from the server's environment) or `sha256:<hex>` of the token. */
  token: z.string().regex(
    /^(\$\{[A-Za-z_][A-Za-z0-9_]*\}|sha256:[0-9a-f]{64})$/,
    "must be '${NAME}' (a server environment variable holding the token) or " +
      "'sha256:<64 hex digits>' (the token's SHA-256), never the token itself",
  ),
  /** A policy name or path; unset: the server's (`MOAT_POLICY`). */
  policy: z.string().min(1).optional(),
  limits: TenantLimitsSchema.default({}),
}).strict();

export const TenantsFileSchema = z.object({
  tenants: z.array(TenantSchema).min(1, "must list at least one tenant").superRefine(
    (tenants, ctx) => {
      const names = new Set<string>();
      const tokens = new Set<string>();
      tenants.forEach((t, i) => {
        if (names.has(t.name)) {
          ctx.addIssue({
            code: "custom",
            path: [i, "name"],
            message: `'${t.name}' is named twice`,
          });
        }
        if (tokens.has(t.token)) {
          ctx.addIssue({ code: "custom", path: [i, "token"], message: "is another tenant's too" });
        }
        names.add(t.name);
        tokens.add(t.token);
      });
    },
  ),
}).strict();

export type Tenant = z.infer<typeof TenantSchema>;
export type TenantLimits = z.infer<typeof TenantLimitsSchema>;

/** A tenants file that cannot be used; the message names the file and the bad key. */
export class TenantsError extends Error {
  override name = "TenantsError";
}

/** Who a request is: the operator (`MOAT_TOKEN`), or a tenant. */
export type Principal = { operator: true; tenant?: undefined } | {
  operator: false;
  tenant: Tenant;
};

const sha256 = (text: string) => new Uint8Array(createHash("sha256").update(text).digest());

/** The `${NAME}`s a tenants file's tokens name (the variables `--allow-env` must grant). */
export function tokenVariables(tenants: Tenant[]): string[] {
  return [...new Set(tenants.flatMap((t) => t.token.match(/^\$\{(\w+)\}$/)?.[1] ?? []))].sort();
}

/** Validates tenants file text; `source` names the file in messages. */
export function parseTenants(text: string, source: string): Tenant[] {
  let raw: unknown;
  try {
    raw = parse(text) ?? {};
  } catch (err) {
    throw new TenantsError(`Tenants file ${source} is not valid YAML: ${(err as Error).message}`);
  }
  const parsed = TenantsFileSchema.safeParse(raw);
  if (parsed.success) return parsed.data.tenants;
  const problem = describeIssue(parsed.error.issues[0], { whole: "the file", noun: "key" });
  throw new TenantsError(`Tenants file ${source}: ${problem}`);
}

/** Reads and validates the tenants file. */
export async function loadTenants(path: string): Promise<Tenant[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new TenantsError(`Tenants file ${path} cannot be read: ${(err as Error).message}`);
  }
  return parseTenants(text, path);
}

/** A policy file a tenant names, read and validated. */
export interface TenantPolicy {
  /** Its absolute path, symbolic links resolved: one scope per file. */
  path: string;
  policy: Policy;
}

/** The real path of a policy name or path (a relative path: from the working directory). */
async function realPolicyPath(nameOrPath: string): Promise<string> {
  const path = resolvePolicyPath(nameOrPath);
  return await Deno.realPath(path).catch(() => path);
}

/**
 * The policies tenants name other than the server's: each distinct file read and validated once
 * (`policies`), and which tenant runs under which (`byTenant`: name to path). A tenant without
 * `policy`, or naming the server's file, runs under the server's policy and is not listed.
 * Throws naming the tenant and the problem.
 */
export async function tenantPolicies(
  tenants: Tenant[],
  serverPolicy: string,
): Promise<{ policies: TenantPolicy[]; byTenant: Map<string, string> }> {
  const server = await realPolicyPath(serverPolicy);
  const policies = new Map<string, TenantPolicy>();
  const byTenant = new Map<string, string>();
  for (const t of tenants) {
    if (t.policy === undefined) continue;
    let path: string;
    try {
      path = await realPolicyPath(t.policy);
      if (path === server) continue;
      if (!policies.has(path)) {
        policies.set(path, { path, policy: (await loadPolicy(path)).policy });
      }
    } catch (err) {
      throw new TenantsError(`tenant '${t.name}': ${(err as Error).message}`);
    }
    byTenant.set(t.name, path);
  }
  return { policies: [...policies.values()], byTenant };
}

/** The operator's token and the tenants' tokens, as digests; who a bearer token is. */
export class Tokens {
  #operator: Uint8Array;
  #tenants: { tenant: Tenant; digest: Uint8Array }[] = [];

  /**
   * `env` reads each `${NAME}` token; one that is not set, or shorter than 16 characters, or the
   * operator's own, throws naming the tenant.
   */
  constructor(
    operatorToken: string,
    tenants: Tenant[] = [],
    env: (name: string) => string | undefined = (n) => Deno.env.get(n),
  ) {
    this.#operator = sha256(operatorToken);
    this.replace(tenants, env);
  }

  /** The tenants now (after a reload, the file's new list). */
  get tenants(): Tenant[] {
    return this.#tenants.map((t) => t.tenant);
  }

  /** The tenant of that name now (a forwarded request names its tenant). */
  named(name: string): Tenant | undefined {
    return this.#tenants.find((t) => t.tenant.name === name)?.tenant;
  }

  /** Takes a new list of tenants; throws (keeping the old list) when one cannot be used. */
  replace(tenants: Tenant[], env: (name: string) => string | undefined = (n) => Deno.env.get(n)) {
    const next = tenants.map((tenant) => {
      const variable = tenant.token.match(/^\$\{(\w+)\}$/)?.[1];
      if (!variable) return { tenant, digest: Uint8Array.fromHex(tenant.token.slice(7)) };
      const token = env(variable);
      if (token === undefined) {
        throw new TenantsError(
          `tenant '${tenant.name}': token names \${${variable}}, which is not set in the server's ` +
            "environment",
        );
      }
      if (token.length < 16) {
        throw new TenantsError(
          `tenant '${tenant.name}': the token in \${${variable}} must be at least 16 characters`,
        );
      }
      return { tenant, digest: sha256(token) };
    });
    for (const t of next) {
      if (sameBytes(t.digest, this.#operator)) {
        throw new TenantsError(
          `tenant '${t.tenant.name}': its token is MOAT_TOKEN, the operator's`,
        );
      }
    }
    this.#tenants = next;
  }

  /**
   * Who `token` is, or undefined for no one. Every digest is compared, whole, whichever
   * matches: the time depends on the number of tenants only.
   */
  identify(token: string): Principal | undefined {
    const digest = sha256(token);
    let found: Tenant | undefined;
    for (const t of this.#tenants) found = sameBytes(t.digest, digest) ? t.tenant : found;
    if (sameBytes(this.#operator, digest)) return { operator: true };
    return found ? { operator: false, tenant: found } : undefined;
  }
}
