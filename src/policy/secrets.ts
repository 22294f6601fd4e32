/**
 * Header values that name server environment variables as `${NAME}` (code mode's `tools.mcp`,
 * `network.allow`): resolved on the host, once, at start-up, and what no text that reaches the
 * sandbox may show.
 */
import { ENV_REF } from "./schema.ts";

/** Headers with every `${NAME}` read, and the texts they must never leak. */
export interface Resolved {
  headers: Record<string, string>;
  /**
   * Every resolved value, and every variable's value on its own (a server may echo the token
   * without its `Bearer `), longest first; values under 4 characters are not secrets worth it.
   */
  secrets: string[];
}

/**
 * Reads each `${NAME}` of `headers` from `env`; a variable that is not set throws, naming `where`
 * (the policy entry), the header and the variable, so the server stops at start-up saying which.
 */
export function resolveHeaders(
  where: string,
  headers: Record<string, string>,
  env: (name: string) => string | undefined,
): Resolved {
  const secrets: string[] = [];
  const resolved = Object.fromEntries(
    Object.entries(headers).map(([header, value]) => {
      const out = value.replace(ENV_REF, (_, name: string) => {
        const found = env(name);
        if (found === undefined) {
          throw new Error(
            `${where}: header '${header}' names \${${name}}, which is not set in the server's ` +
              "environment",
          );
        }
        secrets.push(found);
        return found;
      });
      secrets.push(out);
      return [header, out];
    }),
  );
  return {
    headers: resolved,
    secrets: [...new Set(secrets)].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length),
  };
}

/** `text` with every secret replaced by `[header]`. */
export function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) out = out.replaceAll(secret, "[header]");
  return out;
}

/** The `${NAME}`s some header values name. */
export function envRefs(values: string[]): string[] {
  return values.flatMap((v) => [...v.matchAll(ENV_REF)].map((m) => m[1]));
}
