import { z } from "zod";
import { describeIssue } from "./validation.ts";
import { parseStoreSetting, type StoreSetting } from "./store/setting.ts";

/** Settings read from the `MOAT_*` environment variables, validated once at start-up. */
export interface Config {
  /**
   * Address to listen on. @default {"127.0.0.1"} In deploy mode: undefined unless `MOAT_HOST` is
   * set, so `Deno.serve` listens where the platform expects.
   */
  host?: string;
  /** Port to listen on (0 picks a free one). @default {8000} In deploy mode: `PORT`, or Deno's. */
  port?: number;
  /**
   * Deploy mode (`DENO_DEPLOY=true`, set by Deno Deploy): the platform's sandbox is the outer
   * layer and the process holds `--allow-all`; start-up proves instead that every worker still
   * gets its narrowed permissions (src/deploy/).
   */
  deploy: boolean;
  /** Bearer token clients must send; generated when `MOAT_TOKEN` is unset. */
  token: string;
  /** Whether `token` was generated here, so start-up prints it once. */
  tokenGenerated: boolean;
  /** Policy name in `policies/` or a path to a policy file. @default {"default"; "deploy" in deploy mode} */
  policy: string;
  /** A second token that opens only `GET /metrics`, for a scraper that must not run code. */
  metricsToken?: string;
  /** `MOAT_STORE`: where sessions are stored. @default {kind: "kv"} */
  store: StoreSetting;
  /** `MOAT_STORE_KEY`: the secret checkpoints are sealed with; required for Redis. */
  storeKey?: string;
  /** `MOAT_STORE_PREFIX`: key prefix, so deployments can share one Redis. @default {"moat"} */
  storePrefix: string;
  /** `MOAT_INSTANCE_ID`: this instance's name in leases, session details and logs. @default random */
  instanceId: string;
  /**
   * `MOAT_ADVERTISE_URL`: where the other instances of a deployment reach this one (an origin,
   * e.g. `http://10.0.3.7:8000`). Set on every instance, calls go to the instance running their
   * session (src/cluster/). @default {undefined: sessions move between instances instead}
   */
  advertiseUrl?: string;
  /** How `run_python_code` writes its result, as mcp-run-python's `--return-mode`. @default {"xml"} */
  mcpReturnMode: "xml" | "json";
  /** `MOAT_TENANTS`: the tenants file (src/tenants/); unset: the operator's token alone. */
  tenants?: string;
}

const EnvSchema = z.object({
  MOAT_HOST: z.string().min(1).default("127.0.0.1"),
  MOAT_PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  MOAT_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  MOAT_POLICY: z.string().min(1).optional(),
  MOAT_METRICS_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  MOAT_STORE: z.string().optional().transform((value, ctx) => {
    try {
      return parseStoreSetting(value);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message.replace(/^MOAT_STORE /, "") });
      return z.NEVER;
    }
  }),
  MOAT_STORE_KEY: z.string().min(16, "must be at least 16 characters (openssl rand -base64 32)")
    .optional(),
  MOAT_INSTANCE_ID: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 . _ -")
    .optional(),
  MOAT_STORE_PREFIX: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 . _ -")
    .default("moat"),
  MOAT_ADVERTISE_URL: z.string().optional().transform((value, ctx) => {
    if (value === undefined) return undefined;
    const url = URL.parse(value);
    const problem = !url
      ? "must be a URL such as http://10.0.3.7:8000"
      : !["http:", "https:"].includes(url.protocol)
      ? "must start with http:// or https://"
      : url.username || url.password
      ? "must not hold a user or password"
      : url.pathname !== "/" || url.search || url.hash
      ? "must be an origin, with no path, query or fragment (e.g. http://10.0.3.7:8000)"
      : undefined;
    if (problem) {
      ctx.addIssue({ code: "custom", message: problem });
      return z.NEVER;
    }
    return url!.origin;
  }),
  MOAT_TENANTS: z.string().min(1).optional(),
  MOAT_MCP_RETURN_MODE: z.enum(["xml", "json"], { error: "must be 'xml' or 'json'" }).default(
    "xml",
  ),
  DENO_DEPLOY: z.string().optional(),
  PORT: z.coerce.number().int().min(0).max(65535).optional(),
}).refine((env) => env.MOAT_STORE.kind !== "redis" || env.MOAT_STORE_KEY, {
  path: ["MOAT_STORE_KEY"],
  message: "must be set when MOAT_STORE is a shared Redis: every instance needs the same key " +
    "(generate one with 'openssl rand -base64 32')",
}).refine((env) => !env.MOAT_ADVERTISE_URL || env.MOAT_STORE.kind !== "memory", {
  path: ["MOAT_ADVERTISE_URL"],
  message: "needs a store the instances share (MOAT_STORE=redis://… or kv:PATH): with " +
    "MOAT_STORE=memory no other instance can know where a session runs",
}).refine((env) => env.DENO_DEPLOY !== "true" || env.MOAT_STORE_KEY, {
  path: ["MOAT_STORE_KEY"],
  message: "must be set in deploy mode (DENO_DEPLOY=true): an instance's disk is not kept, so " +
    "the key that seals checkpoints must come from the environment, the same for every instance " +
    "(generate one with 'openssl rand -base64 32' and add it as a secret environment variable)",
});

const ENV_KEYS = Object.keys(EnvSchema.shape);

/** A setting that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Reads the configuration from an environment lookup (Deno.env.get in production). */
export function readConfig(get: (name: string) => string | undefined): Config {
  const raw = Object.fromEntries(
    ENV_KEYS.map((k) => [k, get(k) || undefined]),
  );
  const parsed = EnvSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(describeIssue(parsed.error.issues[0], { whole: "the settings" }));
  }
  const env = parsed.data;
  const token = env.MOAT_TOKEN ?? randomToken();
  const deploy = env.DENO_DEPLOY === "true";
  return {
    host: deploy && raw.MOAT_HOST === undefined ? undefined : env.MOAT_HOST,
    port: deploy && raw.MOAT_PORT === undefined ? env.PORT : env.MOAT_PORT,
    deploy,
    token,
    tokenGenerated: env.MOAT_TOKEN === undefined,
    policy: env.MOAT_POLICY ?? (deploy ? "deploy" : "default"),
    metricsToken: env.MOAT_METRICS_TOKEN,
    store: env.MOAT_STORE,
    storeKey: env.MOAT_STORE_KEY,
    storePrefix: env.MOAT_STORE_PREFIX,
    instanceId: env.MOAT_INSTANCE_ID ?? `moat-${crypto.getRandomValues(new Uint8Array(4)).toHex()}`,
    advertiseUrl: env.MOAT_ADVERTISE_URL,
    mcpReturnMode: env.MOAT_MCP_RETURN_MODE,
    tenants: env.MOAT_TENANTS,
  };
}

function randomToken(): string {
  return crypto.getRandomValues(new Uint8Array(24)).toHex();
}
