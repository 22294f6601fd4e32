/**
 * What a call came to, in the protocol's terms: its result, output, error and the limit it hit,
 * decided from how it ended. Host paths never reach the model, even inside error messages.
 */
import { ROOT, ROOT_URL } from "../paths.ts";
import type { ExecEnd } from "../sandbox/interpreter.ts";
import { pythonError, type PythonErrorBody } from "../worker/errors.ts";

/** Which limit, if any, ended or cut a call. */
export type LimitHit = "timeout" | "memory" | "stdout" | "stderr" | "result" | "crash";

/** A call's outcome, before it is serialized. */
export interface Outcome {
  /** JSON text of the result, kept as text so big integers keep every digit. */
  result: string;
  stdout: string;
  stderr: string;
  error: PythonErrorBody | null;
  limit: LimitHit | null;
  cut: { stdout: boolean; stderr: boolean; result: boolean };
  /** The interpreter was lost, with its state. */
  stateLost: boolean;
  /** What the sandbox refused during the call, for the audit log (never sent to the client). */
  denied?: string[];
}

/**
 * Removes the server's install directory, as a path or a file URL, from text. `root` is the
 * decoded path and `rootUrl` the escaped `file:` URL, both ending in `/`; tests pass their own.
 */
export function scrub(text: string, root = ROOT, rootUrl = ROOT_URL): string {
  return text.replaceAll(rootUrl, "").replaceAll(`file://${root}`, "").replaceAll(root, "");
}

function lostState(
  type: string,
  what: string,
  notRun: boolean,
  restored = false,
): PythonErrorBody {
  const text = restored
    ? `${what} The interpreter was replaced and the session restored from its last ` +
      `checkpoint: what changed since that checkpoint, this call's changes included, is lost.`
    : `${what} The interpreter was replaced, so this session's ` +
      `variables, imports and definitions are lost; ` +
      (notRun
        ? `this call's code was NOT run: send it again, with whatever it needs redefined.`
        : `the next call starts fresh.`);
  const error = pythonError(type, text);
  error.pythonExceptionValue = error.message;
  return error;
}

/** The error for an interpreter that was lost, by why it was lost. */
function lostError(
  end: Extract<ExecEnd, { kind: "killed" }>,
  timeoutMs: number,
  notRun: boolean,
  restored: boolean,
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
          restored,
        ),
      };
    case "memory":
      return { limit: "memory", error: lostState("MemoryError", `${detail}.`, notRun, restored) };
    case "stopped":
      return {
        limit: "crash",
        error: lostState(
          "InterpreterStopped",
          `The interpreter was stopped: ${detail}.`,
          notRun,
          restored,
        ),
      };
    default: {
      const memory = /memory|allocat/i.test(end.detail);
      return {
        limit: memory ? "memory" : "crash",
        error: lostState(
          memory ? "MemoryError" : "InterpreterCrash",
          `The Python interpreter crashed (${detail}).`,
          notRun,
          restored,
        ),
      };
    }
  }
}

/** A call that ran past its time and was interrupted keeps the traceback, as a TimeoutError. */
function timedOut(error: PythonErrorBody | null, timeoutMs: number): PythonErrorBody {
  const note = `Execution exceeded the time limit of ${timeoutMs} ms and was interrupted; ` +
    `the session keeps its state.`;
  const trace = error?.message.split("\n").slice(0, -1).join("\n") ?? "";
  return pythonError("TimeoutError", note, trace);
}

/**
 * Decides a call's outcome. `notRun`: the interpreter had been lost before the call, which was
 * therefore not run. `restored`: the lost interpreter was replaced by the session's last checkpoint.
 */
export function classify(
  end: ExecEnd,
  timeoutMs: number,
  notRun = false,
  restored = false,
): Outcome {
  const outcome: Outcome = {
    result: "null",
    stdout: "",
    stderr: "",
    error: null,
    limit: null,
    cut: { stdout: false, stderr: false, result: false },
    stateLost: end.kind === "killed",
  };
  if (end.kind === "done") {
    const { reply } = end;
    Object.assign(outcome, {
      result: reply.result,
      stdout: reply.stdout,
      stderr: reply.stderr,
      cut: reply.cut,
      error: JSON.parse(reply.error),
      denied: reply.denied,
    });
    if (end.interrupted) {
      outcome.limit = "timeout";
      outcome.result = "null";
      outcome.error = timedOut(outcome.error, timeoutMs);
    } else if (outcome.error?.pythonExceptionType === "MemoryError") outcome.limit = "memory";
    else if (reply.cut.result) outcome.limit = "result";
    else if (reply.cut.stdout) outcome.limit = "stdout";
    else if (reply.cut.stderr) outcome.limit = "stderr";
  } else {
    const lost = lostError(end, timeoutMs, notRun, restored);
    outcome.error = lost.error;
    outcome.limit = lost.limit;
  }
  const { error } = outcome;
  if (error) {
    error.message = scrub(error.message);
    if (error.pythonExceptionType !== "FinalAnswerException") {
      error.pythonExceptionValue = scrub(error.pythonExceptionValue);
    }
    if (outcome.stdout) error.stack = `Printed before the error:\n${outcome.stdout}`;
  }
  return outcome;
}
