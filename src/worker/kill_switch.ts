/**
 * A way for the host to end this worker that Python cannot stop. Deno's `worker.terminate()`
 * does not stop a thread that is busy (denoland/deno#35657: it keeps its core and its memory for
 * good), and Python can catch every KeyboardInterrupt the interrupt buffer raises. But the
 * interpreter itself reads the interrupt buffer, from JavaScript, every few dozen bytecodes and
 * wherever C code checks for signals. That read goes through a getter here, which ends the worker
 * with `Deno.exit` (V8 lets nothing catch it) once the host has written `KILL_SIGNAL` there.
 */
import type { PyodideAPI } from "pyodide";

/**
 * Written into the interrupt buffer by the host (`Interpreter`) to end the worker from inside.
 * Not a signal number.
 */
export const KILL_SIGNAL = -1;

/** Kept from the start: nothing Python reaches can take it away. */
const exit = globalThis.Deno?.exit;

/** Puts the kill switch between the interpreter and its interrupt buffer (after `setInterruptBuffer`). */
export function installKillSwitch(py: PyodideAPI, interrupt: Int32Array): void {
  let read = 0;
  // Read every few dozen bytecodes: kept to a plain read and a compare.
  const buffer = {
    get 0(): number {
      read = interrupt[0];
      if (read === KILL_SIGNAL) exit(1);
      return read;
    },
    /** The interpreter clears what it read (a no-op for 0); a kill written meanwhile is kept. */
    set 0(value: number) {
      if (read !== 0) Atomics.compareExchange(interrupt, 0, read, value);
    },
  };
  // deno-lint-ignore no-explicit-any
  (py as any)._module.Py_EmscriptenSignalBuffer = buffer;
}
