/**
 * What code mode's upstream servers need of the server process's permissions: their hosts and
 * the environment variables their headers name. Kept apart from the MCP client, so the start
 * task's flag derivation does not load the SDK.
 */
import { ENV_REF, type McpServer } from "../policy/schema.ts";

/** The `${NAME}`s the policy's upstream headers name: the only extra `--allow-env` names. */
export function envNames(servers: McpServer[]): string[] {
  const names = servers.flatMap((s) =>
    Object.values(s.headers).flatMap((v) => [...v.matchAll(ENV_REF)].map((m) => m[1]))
  );
  return [...new Set(names)].sort();
}

/** `host:port` of each upstream server: the only extra hosts of the server's `--allow-net`. */
export function upstreamHosts(servers: McpServer[]): string[] {
  return [
    ...new Set(servers.map((s) => {
      const url = new URL(s.url);
      return `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
    })),
  ];
}
