import { z } from "zod";

/** Settings read from the `MOAT_*` environment variables, validated once at start-up. */
export interface Config {
  /** Address to listen on. @default {"127.0.0.1"} */
  host: string;
  /** Port to listen on (0 picks a free one). @default {8000} */
  port: number;
  /** Bearer token clients must send; generated when `MOAT_TOKEN` is unset. */
  token: string;
  /** Whether `token` was generated here, so start-up prints it once. */
  tokenGenerated: boolean;
  /** Policy name in `policies/` or a path to a policy file. @default {"default"} */
  policy: string;
  /** How `run_python_code` writes its result, as mcp-run-python's `--return-mode`. @default {"xml"} */
  mcpReturnMode: "xml" | "json";
}

const EnvSchema = z.object({
  MOAT_HOST: z.string().min(1).default("127.0.0.1"),
  MOAT_PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  MOAT_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  MOAT_POLICY: z.string().min(1).default("default"),
  MOAT_MCP_RETURN_MODE: z.enum(["xml", "json"], { error: "must be 'xml' or 'json'" }).default(
    "xml",
  ),
});

/** A setting that cannot be used; the message names the variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Reads the configuration from an environment lookup (Deno.env.get in production). */
export function readConfig(get: (name: string) => string | undefined): Config {
  const raw = Object.fromEntries(
    ["MOAT_HOST", "MOAT_PORT", "MOAT_TOKEN", "MOAT_POLICY", "MOAT_MCP_RETURN_MODE"].map((
      k,
    ) => [k, get(k) || undefined]),
  );
  const parsed = EnvSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`${issue.path.join(".")}: ${issue.message}`);
  }
  const env = parsed.data;
  const token = env.MOAT_TOKEN ?? randomToken();
  return {
    host: env.MOAT_HOST,
    port: env.MOAT_PORT,
    token,
    tokenGenerated: env.MOAT_TOKEN === undefined,
    policy: env.MOAT_POLICY,
    mcpReturnMode: env.MOAT_MCP_RETURN_MODE,
  };
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
