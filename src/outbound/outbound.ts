/**
 * Outbound HTTP for sandboxed code: the worker holds no network permission, so every request
 * Python sends (`urllib`, `http.client`, `requests`, `httpx`, `moat.fetch`) comes here. The host
 * checks it against `network.allow`, adds that entry's headers (replacing Python's), keeps to its
 * `perMinute`, sends it without following redirects (the client follows them, each hop checked
 * here again), and answers within the call's caps: `limits.resultBytes` for the body, the
 * request's own timeout, `limits.toolCallMs` and the call's time limit for the wait.
 */
import { Buffer } from "node:buffer";
import { logEvent } from "../audit.ts";
import { scrub } from "../policy/secrets.ts";
import { matchRule, RateWindows, type Rule } from "./rules.ts";

/** A request as Python's clients hand it to the host. */
export interface OutboundRequest {
  url: string;
  method: string;
  headers: [string, string][];
  body?: Uint8Array;
  /** Python's own timeout for it, in seconds. */
  timeout?: number;
}

/** An answer: the response (its body whole, decoded), or why there is none. */
export type OutboundAnswer =
  | {
    status: number;
    reason: string;
    url: string;
    headers: [string, string][];
    body: Uint8Array;
  }
  | { error: string; kind: OutboundOutcome };

/** How one request ended, for `moat_outbound_requests_total` and the audit line. */
export type OutboundOutcome =
  | "ok"
  | "refused"
  | "rate-limited"
  | "timeout"
  | "too-big"
  | "failed";

/** Counts one request: `host` is a `network.allow` entry, or `other` for a host refused. */
export type OutboundCount = (host: string, outcome: OutboundOutcome) => void;

/** What one call's requests came to, for its answer's `resources.network`. */
export interface NetworkUse {
  requests: number;
  bytesIn: number;
  refused: number;
  /** The hosts whose `perMinute` this call reached. */
  rateLimited: string[];
}

export interface OutboundOptions {
  /** The largest response body (the policy's `limits.resultBytes`). */
  maxBytes: number;
  count?: OutboundCount;
  /** The audit sink; default the audit log. */
  log?: (fields: Record<string, unknown>) => void;
}

/** Headers the host sets itself (or the connection owns): what Python gives of them is dropped. */
const HOST_OWNED = new Set([
  "host",
  "connection",
  "keep-alive",
  "content-length",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "expect",
  "accept-encoding", // the host decompresses what it asked for
]);
/** Response headers that describe the bytes on the wire, not the (decoded) body Python gets. */
const WIRE_HEADERS = new Set([
  "content-length",
  "content-encoding",
  "transfer-encoding",
  "connection",
]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\r\n\0]/;
/** Control characters or spaces: a URL holding one is refused rather than silently cleaned. */
// deno-lint-ignore no-control-regex
const BAD_URL = /[\x00-\x20\x7f]/;

/** The policy's outbound HTTP, one per server. */
export class Outbound {
  readonly #rules: Rule[];
  readonly #windows = new RateWindows();
  readonly #maxBytes: number;
  readonly #count: OutboundCount;
  readonly #log: (fields: Record<string, unknown>) => void;
  /** Every secret of every entry: no error text shows one. */
  readonly #secrets: string[];

  constructor(rules: Rule[], options: OutboundOptions) {
    this.#rules = rules;
    this.#maxBytes = options.maxBytes;
    this.#count = options.count ?? (() => {});
    this.#log = options.log ?? ((fields) => logEvent("outbound", fields));
    this.#secrets = rules.flatMap((r) => r.secrets).sort((a, b) => b.length - a.length);
  }

  /** The hosts as `network.allow` names them (the metrics' `host` values). */
  get hosts(): string[] {
    return this.#rules.map((r) => r.host);
  }

  /**
   * Sends one request of `session`'s running call. `timeoutMs` bounds it (the call's
   * `limits.toolCallMs`), `signal` ends it early (the call ended). Never throws.
   */
  async send(
    session: string,
    request: OutboundRequest,
    timeoutMs: number,
    signal?: AbortSignal,
    use?: NetworkUse,
    tenant?: string,
  ): Promise<OutboundAnswer> {
    const started = performance.now();
    const method = String(request.method ?? "GET").toUpperCase();
    const target = this.#target(request.url);
    const rule = typeof target === "string" ? undefined : matchRule(this.#rules, target);
    const audit = (outcome: OutboundOutcome, fields: Record<string, unknown> = {}) => {
      this.#count(rule?.host ?? "other", outcome);
      this.#log({
        session,
        ...(tenant ? { tenant } : {}),
        host: rule?.host ?? (typeof target === "string" ? undefined : target.host),
        method,
        outcome,
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        ...fields,
      });
    };
    if (use) use.requests++;
    const refuse = (error: string): OutboundAnswer => {
      if (use) use.refused++;
      audit("refused");
      return { error, kind: "refused" };
    };
    if (typeof target === "string") return refuse(target);
    if (!rule) {
      return refuse(
        `host '${target.host}' is not in network.allow (the policy's list of hosts Python may reach)`,
      );
    }
    if (!TOKEN.test(method) || method.length > 32) {
      return refuse(`'${method}' is not an HTTP method`);
    }
    const headers = new Headers();
    for (const pair of request.headers ?? []) {
      const [name, value] = [String(pair[0]), String(pair[1])];
      if (!TOKEN.test(name)) return refuse(`header name ${JSON.stringify(name)} is not valid`);
      if (BAD_VALUE.test(value)) {
        return refuse(`header '${name}' holds a line break or NUL, which HTTP does not allow`);
      }
      if (HOST_OWNED.has(name.toLowerCase()) || rule.headers.has(name.toLowerCase())) continue;
      headers.append(name, value);
    }
    for (const [name, value] of rule.headers) headers.set(name, value);
    if (!this.#windows.take(session, rule)) {
      if (use && !use.rateLimited.includes(rule.host)) use.rateLimited.push(rule.host);
      audit("rate-limited", { limit: "perMinute" });
      return {
        error: `network.allow '${rule.host}': perMinute (${rule.perMinute} requests per minute ` +
          "for this session) reached; try again later",
        kind: "rate-limited",
      };
    }
    const waitMs = Math.min(
      timeoutMs,
      request.timeout && request.timeout > 0 ? Math.ceil(request.timeout * 1000) : timeoutMs,
    );
    const deadline = AbortSignal.timeout(waitMs);
    const stop = signal ? AbortSignal.any([signal, deadline]) : deadline;
    try {
      const response = await fetch(target, {
        method,
        headers,
        body: request.body && method !== "GET" && method !== "HEAD"
          ? request.body as Uint8Array<ArrayBuffer>
          : undefined,
        redirect: "manual",
        signal: stop,
      });
      const body = await readCapped(response, this.#maxBytes);
      if (!body) {
        audit("too-big", { status: response.status });
        return {
          error: `the response from '${target.host}' is larger than limits.resultBytes ` +
            `(${this.#maxBytes} bytes)`,
          kind: "too-big",
        };
      }
      const clean = this.#clean(body, rule);
      if (use) use.bytesIn += clean.length;
      audit("ok", { status: response.status, bytes: clean.length });
      return {
        status: response.status,
        reason: response.statusText,
        url: target.href,
        headers: [...response.headers]
          .filter(([name]) => !WIRE_HEADERS.has(name))
          .map(([name, value]) => [name, scrub(value, rule.secrets)]),
        body: clean,
      };
    } catch (err) {
      const timedOut = deadline.aborted;
      audit(timedOut ? "timeout" : "failed");
      const why = timedOut
        ? `no response within ${waitMs} ms` +
          (waitMs === timeoutMs ? " (limits.toolCallMs)" : " (the request's timeout)")
        : signal?.aborted
        ? "the call ended"
        : scrub(String((err as Error)?.message ?? err), this.#secrets);
      return { error: `${method} ${target.origin}: ${why}`, kind: timedOut ? "timeout" : "failed" };
    }
  }

  /** The URL to send to, or why not. */
  #target(url: unknown): URL | string {
    const text = String(url ?? "");
    if (BAD_URL.test(text)) return "the URL holds a control character or a space";
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      return `'${text.slice(0, 200)}' is not an absolute URL`;
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      return `only http and https URLs are allowed, not '${parsed.protocol}'`;
    }
    if (parsed.username || parsed.password) {
      return "a URL may not carry a user name or password (send an Authorization header)";
    }
    return parsed;
  }

  /** The body with any of the entry's secrets the server echoed back replaced by `[header]`. */
  #clean(body: Uint8Array, rule: Rule): Uint8Array {
    if (!rule.secrets.length) return body;
    let buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    for (const secret of rule.secrets) {
      const needle = Buffer.from(secret);
      if (buf.indexOf(needle) < 0) continue;
      const parts: Buffer[] = [];
      let from = 0;
      for (let at = buf.indexOf(needle); at >= 0; at = buf.indexOf(needle, from)) {
        parts.push(buf.subarray(from, at), Buffer.from("[header]"));
        from = at + needle.length;
      }
      parts.push(buf.subarray(from));
      buf = Buffer.concat(parts);
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }
}

/** The whole body, or undefined once it passes `max` bytes (the rest is not read). */
async function readCapped(response: Response, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(response.headers.get("content-length") ?? "NaN");
  if (declared > max && !response.headers.has("content-encoding")) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.body) return new Uint8Array();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    size += read.value.length;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(read.value);
  }
  return chunks.length === 1 ? chunks[0] : new Uint8Array(Buffer.concat(chunks, size));
}
