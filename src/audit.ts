import type { Answer } from "./session/answer.ts";

/** Writes one structured JSON line to stdout; never the code or its output. */
export function logEvent(event: string, fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ time: new Date().toISOString(), event, ...fields }));
}

/** The audit line for one call. */
export function logCall(session: string, answer: Answer): void {
  logEvent("call", {
    session,
    durationMs: Math.round(answer.durationMs * 10) / 10,
    outcome: answer.outcome,
    limit: answer.limit,
    stateLost: answer.stateLost,
    bytesOut: answer.body.length,
  });
}
