/**
 * What code mode's upstream servers and the outbound headers of `network.allow` need of the
 * server process's permissions: hosts, and the environment variables their headers name. Kept apart from the MCP client, so the start
 * task's flag derivation does not load the SDK.
 */
import type { McpServer, Policy } from "../policy/schema.ts";
import { envRefs } from "../policy/secrets.ts";

/** The `${NAME}`s the policy's upstream headers name: the only extra `--allow-env` names. */
export function envNames(servers: McpServer[]): string[] {
  return [...new Set(envRefs(servers.flatMap((s) => Object.values(s.headers))))].sort();
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

/** The `${NAME}`s the headers of `network.allow` name: the host adds them to Python's requests. */
export function networkEnvNames(policy: Pick<Policy, "network">): string[] {
  const values = policy.network.allow.flatMap((e) =>
    typeof e === "string" ? [] : Object.values(e.headers)
  );
  return [...new Set(envRefs(values))].sort();
}
