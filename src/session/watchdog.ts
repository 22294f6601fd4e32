import type { Interpreter } from "../sandbox/interpreter.ts";

/** How often the server's resident memory is read. */
const EVERY_MS = 200;
/** After a kill, time for the worker's memory to be returned before the next decision. */
const SETTLE_MS = 1_000;

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
    if (rss <= this.budgetBytes) return false;
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
    return true;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
