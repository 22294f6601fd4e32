/**
 * Runs tasks one at a time in the order they were added, as a session's calls must run.
 * A task that fails does not stop the ones behind it.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #size = 0;
  #background = 0;
  #running = false;
  #runningBackground = false;

  /** Tasks added and not yet finished, the running one included (background tasks aside). */
  get size(): number {
    return this.#size - this.#background;
  }

  /** A task is running now. */
  get running(): boolean {
    return this.#running;
  }

  /** Calls waiting behind the running task (background tasks aside). */
  get waiting(): number {
    return this.size - (this.#running && !this.#runningBackground ? 1 : 0);
  }

  /**
   * Runs `task` after every task added before it; settles as `task` does. A `background` task
   * (a checkpoint) is not counted in `size`, so it never makes a caller's call refused.
   */
  run<T>(task: () => Promise<T> | T, background = false): Promise<T> {
    this.#size++;
    if (background) this.#background++;
    const result = this.#tail.then(async () => {
      this.#running = true;
      this.#runningBackground = background;
      try {
        return await task();
      } finally {
        this.#running = false;
        this.#runningBackground = false;
        this.#size--;
        if (background) this.#background--;
      }
    });
    this.#tail = result.catch(() => {});
    return result;
  }

  /** Resolves once every task added so far has finished. */
  idle(): Promise<void> {
    return this.#tail.then(() => {});
  }
}
