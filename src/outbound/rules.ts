/**
 * The policy's `network.allow` as the host applies it to each request Python sends: which entry
 * a URL falls under, the headers that entry adds (read from the environment once, at start-up),
 * and how many requests per minute it allows. Matching is exact: the URL's host name as the
 * WHATWG parser gives it (lower case, numeric forms of an address made canonical), and the port
 * when the entry names one.
 */
import type { Policy } from "../policy/schema.ts";
import { resolveHeaders } from "../policy/secrets.ts";

/** One `network.allow` entry, resolved. */
export interface Rule {
  /** The entry as written (`name` or `name:port`): the metrics' and the audit line's `host`. */
  host: string;
  hostname: string;
  /** Absent: any port. */
  port?: string;
  /** Header name (lower case) → value, added to every request, replacing Python's. */
  headers: Map<string, string>;
  perMinute?: number;
  /** What no text reaching the sandbox may show. */
  secrets: string[];
}

/** Every entry of `policy.network.allow`; a header naming a variable that is not set throws. */
export function rulesFor(
  policy: Pick<Policy, "network">,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Rule[] {
  return policy.network.allow.map((entry) => {
    const spec = typeof entry === "string" ? { host: entry, headers: {} } : entry;
    const { headers, secrets } = resolveHeaders(
      `network.allow '${spec.host}'`,
      spec.headers,
      env,
    );
    const at = spec.host.lastIndexOf(":");
    const ported = at > 0 && !spec.host.endsWith("]");
    return {
      host: spec.host,
      hostname: ported ? spec.host.slice(0, at) : spec.host,
      port: ported ? spec.host.slice(at + 1) : undefined,
      headers: new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v])),
      perMinute: "perMinute" in spec ? spec.perMinute : undefined,
      secrets,
    };
  });
}

/** The entry `url` falls under, or none. */
export function matchRule(rules: Rule[], url: URL): Rule | undefined {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return rules.find((r) => r.hostname === url.hostname && (!r.port || r.port === port));
}

/**
 * At most `perMinute` requests per session and host in any 60 seconds (a sliding window): the
 * times of the last ones are kept, a session's only while it sends.
 */
export class RateWindows {
  readonly #sent = new Map<string, number[]>();
  #checks = 0;

  /** Counts a request now, or answers false when the window is full. */
  take(session: string, rule: Rule, now = Date.now()): boolean {
    if (!rule.perMinute) return true;
    if (++this.#checks % 1024 === 0) this.#sweep(now);
    const key = `${session}\n${rule.host}`;
    const times = (this.#sent.get(key) ?? []).filter((t) => now - t < 60_000);
    if (times.length >= rule.perMinute) {
      this.#sent.set(key, times);
      return false;
    }
    times.push(now);
    this.#sent.set(key, times);
    return true;
  }

  /** Forgets windows with nothing in the last minute. */
  #sweep(now: number): void {
    for (const [key, times] of this.#sent) {
      if (times.every((t) => now - t >= 60_000)) this.#sent.delete(key);
    }
  }
}
