/**
 * An interpreter's thread runs below the thread that serves HTTP. With code spinning in many
 * sessions on a few cores, the scheduler otherwise shares the cores evenly among all of them and
 * the main thread waits its turn: `/health` and every answer (a session's included) slow down by
 * the number of busy interpreters. Niced, the main thread gets a core as soon as it has work, and
 * interpreters still take every cycle it leaves. Measured in 2-minute `deno task soak` runs on 2
 * cores, side by side: `/health` p99 62–64 ms niced against 151–215 ms at the server's priority
 * (the main thread waited 155 ms per second for a core at nice 0 while using 86 ms).
 */
import { setPriority } from "node:os";

/** The nice value of an interpreter's thread (0 is the server's; 19 the lowest). */
export const INTERPRETER_NICE = 15;

/**
 * Lowers the calling thread's priority (`setpriority(PRIO_PROCESS, 0)` names the calling thread
 * on Linux; elsewhere it may name the process, which only makes every thread equal again). The
 * worker is created with `sys: ["setPriority"]` for this and revokes it before any Python runs.
 * Where it is not permitted (a platform that forbids it), the interpreter runs at the server's
 * priority, as before.
 */
export function lowerPriority(): boolean {
  try {
    setPriority(0, INTERPRETER_NICE);
    return true;
  } catch {
    return false;
  }
}
