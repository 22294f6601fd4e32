import assert from "node:assert/strict";
import { ROOT, ROOT_URL } from "../paths.ts";
import type { ExecEnd, KillReason } from "../sandbox/interpreter.ts";
import type { ExecReply } from "../protocol/messages.ts";
import { pythonError, type PythonErrorBody } from "../worker/errors.ts";
import { serialize } from "./answer.ts";
import { classify, scrub } from "./outcome.ts";

const TRACE = 'Traceback (most recent call last):\n  File "<exec>", line 2, in <module>';

function done(reply: Partial<ExecReply> = {}, interrupted = false): ExecEnd {
  return {
    kind: "done",
    interrupted,
    reply: {
      result: "null",
      error: "null",
      stdout: "",
      stderr: "",
      cut: { stdout: false, stderr: false, result: false },
      memoryBytes: 1 << 20,
      ...reply,
    },
  };
}

function raised(type: string, value: string, reply: Partial<ExecReply> = {}): ExecEnd {
  return done({ ...reply, error: JSON.stringify(pythonError(type, value, TRACE)) });
}

function killed(reason: KillReason, detail: string): ExecEnd {
  return { kind: "killed", reason, detail };
}

function errorOf(error: PythonErrorBody | null): PythonErrorBody {
  assert.ok(error, "an error was expected");
  return error;
}

Deno.test("a call that finished keeps its result and output, with no error or limit", () => {
  const outcome = classify(done({ result: "42", stdout: "hi\n", stderr: "warn\n" }), 1000);
  assert.equal(outcome.result, "42");
  assert.equal(outcome.stdout, "hi\n");
  assert.equal(outcome.stderr, "warn\n");
  assert.equal(outcome.error, null);
  assert.equal(outcome.limit, null);
  assert.equal(outcome.stateLost, false);
});

Deno.test("an interrupted call is a TimeoutError that keeps the traceback lines", () => {
  const end = raised("KeyboardInterrupt", "", { result: "1" });
  assert.equal(end.kind, "done");
  const outcome = classify({ ...end, interrupted: true }, 500);
  const error = errorOf(outcome.error);
  assert.equal(outcome.limit, "timeout");
  assert.equal(outcome.result, "null");
  assert.equal(outcome.stateLost, false);
  assert.equal(error.pythonExceptionType, "TimeoutError");
  assert.match(error.pythonExceptionValue, /time limit of 500 ms and was interrupted/);
  assert.match(error.pythonExceptionValue, /keeps its state/);
  assert.ok(error.message.startsWith(`${TRACE}\nTimeoutError: `), error.message);
  assert.doesNotMatch(error.message, /KeyboardInterrupt/);
});

Deno.test("a call interrupted before it raised is still a TimeoutError", () => {
  const outcome = classify(done({}, true), 500);
  const error = errorOf(outcome.error);
  assert.equal(error.pythonExceptionType, "TimeoutError");
  assert.ok(error.message.startsWith("TimeoutError: "), error.message);
});

Deno.test("a MemoryError raised by the code counts as the memory limit", () => {
  const outcome = classify(raised("MemoryError", ""), 1000);
  assert.equal(outcome.limit, "memory");
  assert.equal(outcome.stateLost, false);
  assert.equal(errorOf(outcome.error).pythonExceptionType, "MemoryError");
});

Deno.test("an ordinary exception is reported as raised, with no limit", () => {
  const outcome = classify(raised("ZeroDivisionError", "division by zero"), 1000);
  const error = errorOf(outcome.error);
  assert.equal(outcome.limit, null);
  assert.equal(error.pythonExceptionType, "ZeroDivisionError");
  assert.equal(error.message, `${TRACE}\nZeroDivisionError: division by zero`);
});

Deno.test("cut output names the limit it hit, the result first, then stdout, then stderr", () => {
  const cut = (result: boolean, stdout: boolean, stderr: boolean) =>
    classify(done({ cut: { result, stdout, stderr } }), 1000).limit;
  assert.equal(cut(true, true, true), "result");
  assert.equal(cut(false, true, true), "stdout");
  assert.equal(cut(false, false, true), "stderr");
  assert.equal(cut(false, false, false), null);
});

Deno.test("an interpreter that ignored the interrupt was replaced: a TimeoutError, state lost", () => {
  const outcome = classify(killed("timeout", "did not stop when interrupted"), 750);
  const error = errorOf(outcome.error);
  assert.equal(outcome.limit, "timeout");
  assert.equal(outcome.stateLost, true);
  assert.equal(error.pythonExceptionType, "TimeoutError");
  assert.match(error.message, /time limit of 750 ms and did not stop when interrupted/);
  assert.match(error.message, /variables, imports and definitions are lost/);
  assert.match(error.message, /the next call starts fresh/);
  assert.equal(error.pythonExceptionValue, error.message);
});

Deno.test("an interpreter stopped for memory is a MemoryError that says why", () => {
  const detail = "The server ran short of memory: it used 900 MB, over its budget of 800 MB";
  const outcome = classify(killed("memory", detail), 1000);
  const error = errorOf(outcome.error);
  assert.equal(outcome.limit, "memory");
  assert.equal(outcome.stateLost, true);
  assert.equal(error.pythonExceptionType, "MemoryError");
  assert.ok(error.message.startsWith(`MemoryError: ${detail}. The interpreter was replaced`));
});

Deno.test("an interpreter stopped by the server is InterpreterStopped", () => {
  const outcome = classify(killed("stopped", "the session was deleted"), 1000);
  const error = errorOf(outcome.error);
  assert.equal(outcome.limit, "crash");
  assert.equal(error.pythonExceptionType, "InterpreterStopped");
  assert.match(error.message, /The interpreter was stopped: the session was deleted\./);
});

Deno.test("a crash is InterpreterCrash, or MemoryError when it was out of memory", () => {
  const crash = classify(killed("crashed", "worker exited"), 1000);
  assert.equal(crash.limit, "crash");
  assert.equal(errorOf(crash.error).pythonExceptionType, "InterpreterCrash");
  assert.match(errorOf(crash.error).message, /crashed \(worker exited\)/);

  const oom = classify(killed("crashed", "RangeError: Array buffer allocation failed"), 1000);
  assert.equal(oom.limit, "memory");
  assert.equal(errorOf(oom.error).pythonExceptionType, "MemoryError");

  const fatal = classify(killed("fatal", "Pyodide fatal error: out of memory"), 1000);
  assert.equal(fatal.limit, "memory");
  assert.equal(fatal.stateLost, true);
});

Deno.test("a call sent to an interpreter already lost says it was not run", () => {
  for (const reason of ["timeout", "memory", "stopped", "crashed"] as const) {
    const error = errorOf(classify(killed(reason, "gone"), 1000, true).error);
    assert.match(error.message, /this call's code was NOT run: send it again/, reason);
    assert.doesNotMatch(error.message, /next call starts fresh/, reason);
  }
});

Deno.test("host paths are scrubbed from error messages and values", () => {
  const where = `File "${ROOT}src/worker/main.ts", line 3; at ${ROOT_URL}src/x.ts:1:2`;
  const outcome = classify(raised("RuntimeError", where), 1000);
  const error = errorOf(outcome.error);
  for (const text of [error.message, error.pythonExceptionValue]) {
    assert.ok(!text.includes(ROOT), text);
    assert.match(text, /File "src\/worker\/main\.ts", line 3; at src\/x\.ts:1:2/);
  }
  const lost = errorOf(classify(killed("crashed", `in ${ROOT}src/worker/main.ts`), 1000).error);
  assert.ok(!lost.message.includes(ROOT), lost.message);
});

Deno.test("a final answer's value is never scrubbed: it is the agent's answer", () => {
  const answer = `the file is at ${ROOT}notes.txt`;
  const error = errorOf(classify(raised("FinalAnswerException", answer), 1000).error);
  assert.equal(error.pythonExceptionValue, answer);
  assert.ok(!error.message.includes(ROOT), error.message);
});

Deno.test("what the code printed before the error is kept in the error's stack", () => {
  const outcome = classify(raised("ValueError", "bad", { stdout: "step 1\nstep 2\n" }), 1000);
  assert.equal(errorOf(outcome.error).stack, "Printed before the error:\nstep 1\nstep 2\n");
  assert.equal(outcome.stdout, "step 1\nstep 2\n");
  const quiet = classify(raised("ValueError", "bad"), 1000);
  assert.equal(errorOf(quiet.error).stack, undefined);
});

Deno.test("what the sandbox refused is kept for the audit", () => {
  const outcome = classify(done({ denied: ["import _pyodide_core"] }), 1000);
  assert.deepEqual(outcome.denied, ["import _pyodide_core"]);
});

Deno.test("scrub removes the root as a path and as a file URL", () => {
  assert.equal(scrub(`${ROOT}src/x.ts`), "src/x.ts");
  assert.equal(scrub(`${ROOT_URL}src/x.ts`), "src/x.ts");
  assert.equal(scrub(`file://${ROOT}src/x.ts`), "src/x.ts");
  assert.equal(scrub("nothing to remove"), "nothing to remove");
});

Deno.test("scrub removes a root with a space in its name, decoded or escaped", () => {
  const root = "/tmp/with space/";
  const url = "file:///tmp/with%20space/";
  assert.equal(scrub("at /tmp/with space/src/x.ts:1", root, url), "at src/x.ts:1");
  assert.equal(scrub("at file:///tmp/with%20space/src/x.ts:1", root, url), "at src/x.ts:1");
  assert.equal(scrub("at file:///tmp/with space/src/x.ts:1", root, url), "at src/x.ts:1");
});

const context = { durationMs: 12.34, memoryBytes: 4096 };

Deno.test("the result stays raw JSON text, so a 40-digit integer keeps every digit", () => {
  const digits = "1234567890123456789012345678901234567890";
  const answer = serialize(classify(done({ result: digits }), 1000), context);
  assert.ok(answer.body.startsWith(`{"result":${digits},`), answer.body);
  assert.equal(answer.outcome, "ok");
});

Deno.test("the body holds output, error, packages and resources", () => {
  const answer = serialize(classify(done({ result: '{"a":[1,2]}', stdout: "hi\n" }), 1000), {
    durationMs: 12.34,
    memoryBytes: 4096,
  });
  const body = JSON.parse(answer.body);
  assert.deepEqual(body, {
    result: { a: [1, 2] },
    stdout: "hi\n",
    stderr: "",
    error: null,
    packages: { loaded: [], skipped: [], failed: [] },
    durationMs: 12.3,
    resources: {
      durationMs: 12.3,
      memoryBytes: 4096,
      limit: null,
      cut: { stdout: false, stderr: false, result: false },
    },
  });
  assert.equal(answer.durationMs, 12.34);
  assert.equal(answer.stateLost, false);
});

Deno.test("cut output ends with a marker saying the policy kept the first part", () => {
  const end = done({
    stdout: "aaaa",
    stderr: "bbbb",
    cut: { stdout: true, stderr: true, result: false },
  });
  const body = JSON.parse(serialize(classify(end, 1000), context).body);
  assert.equal(body.stdout, "aaaa\n[stdout cut: the policy keeps the first part only]");
  assert.equal(body.stderr, "bbbb\n[stderr cut: the policy keeps the first part only]");
  assert.equal(body.resources.limit, "stdout");
  assert.deepEqual(body.resources.cut, { stdout: true, stderr: true, result: false });
});

Deno.test("packages that failed to load are said first in stderr", () => {
  const packages = {
    loaded: [{ name: "six", version: "1.16.0" }],
    skipped: [{ name: "math", reason: "part of the standard library" }],
    failed: [{ name: "nope", reason: "not found on any index" }],
  };
  const outcome = classify(done({ stderr: "code's own warning\n" }), 1000);
  const body = JSON.parse(serialize(outcome, { ...context, packages }).body);
  assert.equal(
    body.stderr,
    "moat: package 'nope' was not loaded: not found on any index\ncode's own warning\n",
  );
  assert.deepEqual(body.packages, packages);
});

Deno.test("an answer with an error is an error for the audit, with its limit and lost state", () => {
  const answer = serialize(classify(killed("memory", "over budget"), 1000), context);
  assert.equal(answer.outcome, "error");
  assert.equal(answer.limit, "memory");
  assert.equal(answer.stateLost, true);
  const body = JSON.parse(answer.body);
  assert.equal(body.result, null);
  assert.equal(body.error.pythonExceptionType, "MemoryError");
});
