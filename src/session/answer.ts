/** A call's answer: its outcome serialized as the protocol's HTTP body, plus what the audit needs. */
import type { LimitHit, Outcome } from "./outcome.ts";
import type { Held } from "./held.ts";
import { describeFailures, emptyReport, type PackagesReport } from "./packages.ts";
import type { NetworkUse } from "../outbound/outbound.ts";

/** One call's answer: the HTTP body as text, plus what the audit log needs. */
export interface Answer {
  body: string;
  outcome: "ok" | "error";
  limit: LimitHit | null;
  stateLost: boolean;
  durationMs: number;
  /** What the sandbox refused during the call, for the audit log (never sent to the client). */
  denied?: string[];
  /** What the call's `packages` list came to (also in `body`), for the metrics. */
  packages?: PackagesReport;
  /** Where the HTTP layer charges the answer's bytes until its client has taken them. */
  held?: Held;
}

/** What the answer says besides the outcome. */
export interface AnswerContext {
  durationMs: number;
  memoryBytes: number;
  packages?: PackagesReport;
  /** The call's outbound HTTP requests (`resources.network`); absent when it sent none. */
  network?: NetworkUse;
  /** Fields added to the body (durable sessions: `restored`, `restoreMs`, `checkpoint`). */
  extra?: Record<string, unknown>;
}

/** Builds the HTTP body; `result` stays raw JSON text so big integers keep every digit. */
export function serialize(outcome: Outcome, ctx: AnswerContext): Answer {
  const { result, error, limit, cut } = outcome;
  const mark = (text: string, isCut: boolean, what: string) =>
    isCut ? `${text}\n[${what} cut: the policy keeps the first part only]` : text;
  const stdout = mark(outcome.stdout, cut.stdout, "stdout");
  let stderr = mark(outcome.stderr, cut.stderr, "stderr");
  // A package that did not load is said in stderr too, ahead of what the code printed.
  if (ctx.packages) stderr = describeFailures(ctx.packages) + stderr;

  const durationMs = Math.round(ctx.durationMs * 10) / 10;
  const body = `{"result":${result},` + JSON.stringify({
    stdout,
    stderr,
    error,
    packages: ctx.packages ?? emptyReport(),
    durationMs,
    resources: {
      durationMs,
      memoryBytes: ctx.memoryBytes,
      limit,
      cut,
      ...(ctx.network ? { network: ctx.network } : {}),
    },
    ...ctx.extra,
  }).slice(1);
  return {
    body,
    outcome: error ? "error" : "ok",
    limit,
    stateLost: outcome.stateLost,
    durationMs: ctx.durationMs,
    denied: outcome.denied,
    packages: ctx.packages,
  };
}
