/**
 * V8's `gc` where the process could not be started with `--expose-gc` (Deno Deploy takes no
 * flags): the host then turns the flag on at run time (src/deploy/v8_flags.ts), which V8 honours
 * for contexts created afterwards, so a fresh `node:vm` context hands out its `gc`. That
 * function collects this worker's whole isolate. Only the function is kept; the context and
 * `node:vm` are not reachable from anything else here.
 */
import { runInNewContext } from "node:vm";

/** `gc` from a new context, or undefined when the flag is off. */
export function gcFromNewContext(): (() => void) | undefined {
  try {
    const gc = runInNewContext("typeof gc === 'function' ? gc : undefined");
    return typeof gc === "function" ? gc : undefined;
  } catch {
    return undefined;
  }
}
