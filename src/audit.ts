/**
 * The audit trail: one JSON line on stdout (stderr in stdio MCP mode) per call, and one per security-relevant event.
 * Lines never hold the code or its output unless the policy's `audit.logCode` asks for the code.
 */
import { metrics } from "./metrics.ts";
import type { Answer } from "./session/answer.ts";

/** Security-relevant events, each logged as `{"event": "security", "kind": …}`. */
export type SecurityKind =
  /** Code tried something the sandbox refused (a blocked import, a host it may not reach). */
  | "denied"
  /** A call hit a policy limit: time, memory, output, result. */
  | "limit"
  /** An interpreter was terminated (did not stop when interrupted, or crashed). */
  | "worker-killed"
  /** The server runs with broader permissions than its policy needs (explicit override). */
  | "broad-permissions"
  /** A stored checkpoint failed authentication or was damaged (see `src/store/`). */
  | "checkpoint-rejected"
  /** A request carried a forwarding header (`moat-hop`) that did not verify (src/cluster/). */
  | "hop-refused";

const encoder = new TextEncoder();
let sink: { writeSync(bytes: Uint8Array): number } = Deno.stdout;
let instance: string | undefined;

/** Adds `instance` (`MOAT_INSTANCE_ID`) to every line, so lines of many instances can be merged. */
export function auditInstance(id: string): void {
  instance = id;
}

/** Sends the audit trail to stderr: as a stdio MCP server, stdout carries only the protocol. */
export function auditToStderr(): void {
  sink = Deno.stderr;
}

/**
 * Writes one structured JSON line to the audit sink (stdout unless `auditToStderr`). (Written directly: console.log formats its
 * arguments first, which took a sixth of a trivial call's main-thread time.)
 */
export function logEvent(event: string, fields: Record<string, unknown>): void {
  const line = JSON.stringify({ time: new Date().toISOString(), event, ...fields, instance });
  const bytes = encoder.encode(`${line}\n`);
  for (let at = 0; at < bytes.length;) at += sink.writeSync(bytes.subarray(at));
}

/** One security-relevant event. */
export function logSecurity(kind: SecurityKind, fields: Record<string, unknown>): void {
  metrics.securityEvent(kind);
  logEvent("security", { kind, ...fields });
}

/** What the audit log records beyond the defaults. */
export interface AuditOptions {
  /** Log each call's code (off by default: code may hold secrets). */
  logCode?: boolean;
}

/** Returns the per-call logger: the call line, then its security events. */
export function callLogger(
  options: AuditOptions = {},
): (session: string, answer: Answer, code?: string, tenant?: string) => void {
  return (session, answer, code, tenant) =>
    logCall(session, answer, options.logCode ? code : undefined, tenant);
}

/** The audit line for one call, then one line per security event it raised. */
export function logCall(session: string, answer: Answer, code?: string, tenant?: string): void {
  metrics.call(answer, tenant);
  logEvent("call", {
    session,
    ...(tenant ? { tenant } : {}),
    durationMs: Math.round(answer.durationMs * 10) / 10,
    outcome: answer.outcome,
    limit: answer.limit,
    stateLost: answer.stateLost,
    bytesOut: answer.body.length,
    ...(code === undefined ? {} : { code }),
  });
  const who = tenant ? { session, tenant } : { session };
  if (answer.limit) logSecurity("limit", { ...who, limit: answer.limit });
  if (answer.stateLost) logSecurity("worker-killed", { ...who, reason: answer.limit });
  for (const what of answer.denied ?? []) logSecurity("denied", { ...who, what });
}
