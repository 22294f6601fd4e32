/**
 * Running one call: capture its output, run it through the runner (awaiting a cell that awaits),
 * check the JSON it produced, and say what the lockdown refused meanwhile.
 */
import type { PyProxy } from "pyodide/ffi";
import type { ExecRequest, Reply } from "../protocol/messages.ts";
import { type Live, memoryBytes } from "./boot.ts";
import { messageOf, pythonError } from "./errors.ts";
import type { Streamer } from "./stream.ts";
import { beginTools, endTools } from "./tools.ts";

/** The answer of an abandoned call: a KeyboardInterrupt, which the host reports as a timeout. */
const INTERRUPTED_ERROR = JSON.stringify(pythonError("KeyboardInterrupt", ""));

/** Resolved to end a call whose task will never run again (see `main.ts`, abandoning). */
export const ABANDONED = Symbol("abandoned");

/**
 * The runner builds its JSON with Python's `json`, which user code can patch; text that is not
 * one valid JSON value would let code inject fields into the answer or break the host's parse.
 */
function checkedJson(result: string, error: string): [string, string] {
  const valid = (text: string) => {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  };
  if (valid(result) && valid(error)) return [result, error];
  const value = "the answer could not be encoded as JSON " +
    "(was the json module patched?); restore it or reset the session";
  return ["null", JSON.stringify(pythonError("RuntimeError", value))];
}

/** What the lockdown refused since the last call; best effort, the answer matters more. */
function takeDenied(live: Live): string[] | undefined {
  try {
    const taken = live.takeDenied();
    const denied = taken.toJs() as string[];
    taken.destroy();
    return denied.length ? denied : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs one call. `abandoned` settles with ABANDONED when the host's interrupt could not reach
 * an awaiting cell, which then ends as interrupted. `streamer`, when given, posts the output
 * while the call runs; its last notice goes before the reply.
 */
export async function exec(
  live: Live,
  request: ExecRequest,
  abandoned: Promise<typeof ABANDONED>,
  streamer?: Streamer,
): Promise<Reply<"exec">> {
  const { code } = request;
  live.output.begin(live.caps, streamer);
  let result = "null";
  let error = "null";
  let resultCut = false;
  let fatal: string | undefined;
  try {
    // JSON text, so no JavaScript object reaches Python.
    const rule = JSON.stringify(request.authorizedImports ?? null);
    if (rule !== (live.authorized ?? "null")) live.setAuthorized(rule);
    live.authorized = rule;
    beginTools(request, () => streamer?.flush());
    const { tools, upstream } = request;
    // JSON text, so no JavaScript object reaches Python; absent on a call without tools.
    const toolsJson = tools?.length || upstream
      ? JSON.stringify({ tools: tools ?? [], upstream: upstream ?? null })
      : undefined;
    let out: PyProxy | undefined = toolsJson
      ? live.run(code, live.namespace, live.caps.resultBytes, toolsJson)
      : live.run(code, live.namespace, live.caps.resultBytes);
    if (typeof out?.then === "function") {
      const pending = out;
      const settled = await Promise.race([pending, abandoned]);
      out = settled === ABANDONED ? undefined : settled;
      if (out) pending.destroy?.();
    }
    if (out) {
      const triple = out.toJs();
      out.destroy();
      [result, error, resultCut] = triple;
      [result, error] = checkedJson(result, error);
    } else error = INTERRUPTED_ERROR;
  } catch (err) {
    // The runner catches every Python exception, so this is the interpreter itself failing.
    fatal = err instanceof Error ? `${err.name}: ${err.message}` : messageOf(err);
  } finally {
    endTools();
    Atomics.store(live.interrupt, 0, 0);
    streamer?.end();
  }
  const { stdout, stderr } = live.output;
  return {
    result,
    error,
    stdout: stdout.text(),
    stderr: stderr.text(),
    cut: { stdout: stdout.cut, stderr: stderr.cut, result: resultCut },
    memoryBytes: memoryBytes(live),
    fatal,
    denied: takeDenied(live),
  };
}
