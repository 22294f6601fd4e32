import type { Interpreter } from "../sandbox/interpreter.ts";
import type { Held } from "./held.ts";

/** One session as the watchdog sees it: what it holds, and how to make it let go. */
export interface Holder {
  /** Its interpreter's memory (files included) and what it holds outside it (`Held`). */
  readonly memoryBytes: number;
  /** Stops its interpreter and drops what can be dropped (unread answers). */
  stop(detail: string): void;
}

/** How often the server's resident memory is read. */
const EVERY_MS = 200;
/** After a kill, time for the worker's memory to be returned before the next decision. */
const SETTLE_MS = 1_000;
/**
 * A stopped worker's memory goes back to the system only once its isolate is torn down, which
 * may take seconds; meanwhile a restore or a replacement allocates. Until the resident memory
 * shows the release (or this long at most), it is counted as gone, so that the next interpreter
 * (often the very session's replacement) is not stopped for memory already on its way out.
 */
const FREEING_MS = 5_000;

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
  /** Memory of stopped interpreters not yet seen returned, and until when it is expected. */
  #freeing = 0;
  #freeingUntil = 0;
  #rssAtKill = 0;

  constructor(
    private readonly budgetBytes: number,
    private readonly holders: () => Iterable<Holder>,
    private readonly log: (line: string) => void = () => {},
    private readonly rss: () => number = () => Deno.memoryUsage().rss,
  ) {
    this.#timer = setInterval(() => this.check(), EVERY_MS);
    Deno.unrefTimer(this.#timer);
  }

  /** Stops the largest interpreter if the server is over budget; returns whether it did. */
  check(now = performance.now()): boolean {
    if (now < this.#quietUntil) return false;
    const rss = this.rss();
    if (now >= this.#freeingUntil || rss <= this.#rssAtKill - this.#freeing / 2) this.#freeing = 0;
    if (rss - this.#freeing <= this.budgetBytes) return false;
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
    largest.stop(detail);
    this.#quietUntil = now + SETTLE_MS;
    this.#freeing += Math.min(largest.memoryBytes, rss);
    this.#freeingUntil = now + FREEING_MS;
    this.#rssAtKill = rss;
    return true;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** A session as the watchdog weighs it: its live interpreter, and what it holds outside it. */
export function holderOf(
  session: { interpreter?: Pick<Interpreter, "alive" | "memoryBytes" | "kill">; held: Held },
): Holder {
  const interpreter = session.interpreter?.alive ? session.interpreter : undefined;
  return {
    memoryBytes: (interpreter?.memoryBytes ?? 0) + session.held.bytes,
    stop(detail) {
      interpreter?.kill("memory", detail);
      session.held.dropAll();
    },
  };
}
