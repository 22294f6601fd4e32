import type { Interpreter } from "../sandbox/interpreter.ts";
import type { Held } from "./held.ts";

/** One session as the watchdog sees it: what it holds, and how to make it let go. */
export interface Holder {
  /** Its interpreter's memory (files included) and what it holds outside it (`Held`). */
  readonly memoryBytes: number;
  /**
   * Stops its interpreter and drops what can be dropped (unread answers); settles once the
   * interpreter's worker has ended, its memory back with the system.
   */
  stop(detail: string): Promise<void>;
}

/** How often the server's resident memory is read. */
const EVERY_MS = 200;
/** After a kill, time for the worker's memory to be returned before the next decision. */
const SETTLE_MS = 1_000;

/**
 * Keeps the whole server under a memory budget. Each interpreter is capped by the policy's
 * memoryMb, but many capped interpreters together can still exceed what the machine has, and
 * then the kernel would kill the server with every session in it. When the process's resident
 * memory passes the budget, the session holding the most memory (its interpreter, its files, its
 * unread answers, queued calls and checkpoints on their way) is stopped: its interpreter killed (its
 * caller, or its next caller, is told why) and its unread answers dropped, one session at a time
 * until the server is back under budget.
 */
export class MemoryWatchdog {
  readonly #timer: ReturnType<typeof setInterval>;
  #quietUntil = 0;
  /**
   * Memory of stopped sessions whose workers have not ended yet. A worker's memory goes back to
   * the system only once its thread has torn it down, which takes as long as that thread waits
   * for a core (seconds, on a busy machine); meanwhile it is counted as gone, so that the next session (often the very
   * session's replacement) is not stopped for memory already on its way out.
   */
  #leaving = 0;

  constructor(
    private readonly budgetBytes: number,
    private readonly holders: () => Iterable<Holder>,
    private readonly log: (line: string) => void = () => {},
    private readonly rss: () => number = () => Deno.memoryUsage().rss,
    /**
     * Memory held by stopped workers that never ended (`stuckBytes`): no session holds it, so
     * stopping sessions cannot get it back; it is left out of the count (`/health` reports it).
     */
    private readonly stuck: () => number = () => 0,
  ) {
    this.#timer = setInterval(() => this.check(), EVERY_MS);
    Deno.unrefTimer(this.#timer);
  }

  /** Stops the largest interpreter if the server is over budget; returns whether it did. */
  check(now = performance.now()): boolean {
    if (now < this.#quietUntil) return false;
    const rss = this.rss();
    if (rss - this.#leaving - this.stuck() <= this.budgetBytes) return false;
    let largest: Holder | undefined;
    for (const holder of this.holders()) {
      if (holder.memoryBytes > (largest?.memoryBytes ?? 0)) largest = holder;
    }
    if (!largest) return false;
    const mb = (n: number) => Math.round(n / (1024 * 1024));
    const detail = `The server ran short of memory: it used ${mb(rss)} MB, over its budget of ` +
      `${mb(this.budgetBytes)} MB (the policy's limits.serverMemoryMb), and this session ` +
      `held the most (${mb(largest.memoryBytes)} MB), so its interpreter was stopped`;
    this.log(
      `memory: ${mb(rss)} MB over the budget of ${mb(this.budgetBytes)} MB; stopping ` +
        `a session holding ${mb(largest.memoryBytes)} MB`,
    );
    const leaving = Math.min(largest.memoryBytes, rss);
    this.#leaving += leaving;
    largest.stop(detail).finally(() => this.#leaving -= leaving);
    this.#quietUntil = now + SETTLE_MS;
    return true;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** A session as the watchdog weighs it: its live interpreter, and what it holds outside it. */
export function holderOf(
  session: {
    interpreter?: Pick<Interpreter, "alive" | "memoryBytes" | "kill" | "exited">;
    held: Held;
  },
): Holder {
  const interpreter = session.interpreter?.alive ? session.interpreter : undefined;
  return {
    memoryBytes: (interpreter?.memoryBytes ?? 0) + session.held.bytes,
    stop(detail) {
      interpreter?.kill("memory", detail);
      session.held.dropAll();
      return interpreter?.exited ?? Promise.resolve();
    },
  };
}
