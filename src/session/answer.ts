import { describeFailures, emptyReport, type PackagesReport } from "../packages/call.ts";
import type { ExecEnd } from "../sandbox/host.ts";

/** The protocol's error object (PROTOCOL.md §1–2). */
export interface PythonErrorBody {
  name: string;
  message: string;
  pythonExceptionType: string;
  pythonExceptionValue: string;
  stack?: string;
}

/** Which limit, if any, ended or cut a call. */
export type LimitHit = "timeout" | "memory" | "stdout" | "stderr" | "result" | "crash";

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
}

const ROOT = new URL("../../", import.meta.url).pathname;

/** Host paths never reach the model, even inside messages of JavaScript errors. */
function scrub(text: string): string {
  return text.replaceAll(`file://${ROOT}`, "").replaceAll(ROOT, "");
}

function lostState(type: string, what: string, notRun = false): PythonErrorBody {
  const message = `${type}: ${what} The interpreter was replaced, so this session's ` +
    `variables, imports and definitions are lost; ` +
    (notRun
      ? `this call's code was NOT run: send it again, with whatever it needs redefined.`
      : `the next call starts fresh.`);
  return { name: "PythonError", message, pythonExceptionType: type, pythonExceptionValue: message };
}

/** The error for an interpreter that was lost, by why it was lost. */
function lostError(
  end: Extract<ExecEnd, { kind: "killed" }>,
  timeoutMs: number,
  notRun: boolean,
): { error: PythonErrorBody; limit: LimitHit } {
  const detail = scrub(end.detail);
  switch (end.reason) {
    case "timeout":
      return {
        limit: "timeout",
        error: lostState(
          "TimeoutError",
          `Execution exceeded the time limit of ${timeoutMs} ms and did not stop when interrupted.`,
          notRun,
        ),
      };
    case "memory":
      return { limit: "memory", error: lostState("MemoryError", `${detail}.`, notRun) };
    case "stopped":
      return {
        limit: "crash",
        error: lostState("InterpreterStopped", `The interpreter was stopped: ${detail}.`, notRun),
      };
    default: {
      const memory = /memory|allocat/i.test(end.detail);
      return {
        limit: memory ? "memory" : "crash",
        error: lostState(
          memory ? "MemoryError" : "InterpreterCrash",
          `The Python interpreter crashed (${detail}).`,
          notRun,
        ),
      };
    }
  }
}

/** Builds the HTTP body; `result` stays raw JSON text so big integers keep every digit. */
export function buildAnswer(
  end: ExecEnd,
  ctx: {
    timeoutMs: number;
    durationMs: number;
    memoryBytes: number;
    packages?: PackagesReport;
    /** The interpreter had been lost before the call, which was therefore not run. */
    notRun?: boolean;
  },
): Answer {
  let result = "null";
  let stdout = "";
  let stderr = "";
  let error: PythonErrorBody | null = null;
  let limit: LimitHit | null = null;
  let cut = { stdout: false, stderr: false, result: false };

  if (end.kind === "done") {
    const msg = end.message;
    result = msg.result;
    stdout = msg.stdout;
    stderr = msg.stderr;
    cut = msg.cut;
    error = JSON.parse(msg.error);
    if (end.interrupted) {
      limit = "timeout";
      result = "null";
      const note =
        `Execution exceeded the time limit of ${ctx.timeoutMs} ms and was interrupted; ` +
        `the session keeps its state.`;
      const trace = error?.message.split("\n").slice(0, -1).join("\n") ?? "";
      error = {
        name: "PythonError",
        message: `${trace ? trace + "\n" : ""}TimeoutError: ${note}`,
        pythonExceptionType: "TimeoutError",
        pythonExceptionValue: note,
      };
    } else if (error?.pythonExceptionType === "MemoryError") {
      limit = "memory";
    } else if (cut.result) limit = "result";
    else if (cut.stdout) limit = "stdout";
    else if (cut.stderr) limit = "stderr";
  } else {
    ({ error, limit } = lostError(end, ctx.timeoutMs, ctx.notRun ?? false));
  }

  if (error) {
    error.message = scrub(error.message);
    error.pythonExceptionValue = error.pythonExceptionType === "FinalAnswerException"
      ? error.pythonExceptionValue
      : scrub(error.pythonExceptionValue);
    if (stdout) error.stack = `Printed before the error:\n${stdout}`;
  }
  const mark = (text: string, isCut: boolean, what: string) =>
    isCut ? `${text}\n[${what} cut: the policy keeps the first part only]` : text;
  stdout = mark(stdout, cut.stdout, "stdout");
  stderr = mark(stderr, cut.stderr, "stderr");
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
    },
  }).slice(1);
  return {
    body,
    outcome: error ? "error" : "ok",
    limit,
    stateLost: end.kind === "killed",
    durationMs: ctx.durationMs,
    denied: end.kind === "done" ? end.message.denied : undefined,
    packages: ctx.packages,
  };
}
