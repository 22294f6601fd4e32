import type { Interpreter } from "../sandbox/interpreter.ts";

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
 * memory passes the budget, the interpreter holding the most memory is stopped (its caller, or
 * its session's next caller, is told why), one at a time until the server is back under budget.
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
    private readonly interpreters: () => Iterable<Interpreter>,
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
    let largest: Interpreter | undefined;
    for (const interpreter of this.interpreters()) {
      if (interpreter.alive && interpreter.memoryBytes > (largest?.memoryBytes ?? 0)) {
        largest = interpreter;
      }
    }
    if (!largest) return false;
    const mb = (n: number) => Math.round(n / (1024 * 1024));
    const detail = `The server ran short of memory: it used ${mb(rss)} MB, over its budget of ` +
      `${mb(this.budgetBytes)} MB (the policy's limits.serverMemoryMb), and this session's ` +
      `interpreter held the most (${mb(largest.memoryBytes)} MB), so it was stopped`;
    this.log(
      `memory: ${mb(rss)} MB over the budget of ${mb(this.budgetBytes)} MB; stopping ` +
        `an interpreter holding ${mb(largest.memoryBytes)} MB`,
    );
    largest.kill("memory", detail);
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
