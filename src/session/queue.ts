/**
 * Runs tasks one at a time in the order they were added, as a session's calls must run.
 * A task that fails does not stop the ones behind it.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #size = 0;
  #running = false;

  /** Tasks added and not yet finished, the running one included. */
  get size(): number {
    return this.#size;
  }

  /** A task is running now. */
  get running(): boolean {
    return this.#running;
  }

  /** Tasks waiting behind the running one. */
  get waiting(): number {
    return this.#size - (this.#running ? 1 : 0);
  }

  /** Runs `task` after every task added before it; settles as `task` does. */
  run<T>(task: () => Promise<T> | T): Promise<T> {
    this.#size++;
    const result = this.#tail.then(async () => {
      this.#running = true;
      try {
        return await task();
      } finally {
        this.#running = false;
        this.#size--;
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
