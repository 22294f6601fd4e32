/**
 * Numbered requests to a helper worker (the sealing worker, the KV store's worker) and their
 * replies, seen from the main thread. The worker starts on the first request (or at `start()`),
 * and again after it failed: a worker that fails rejects everything it was asked, and the next
 * request starts a new one.
 */

/** A request as the caller writes it: the id is this helper's to give. */
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;

/** What `WorkerRequests` is built with. */
export interface WorkerRequestsOptions<Reply> {
  /** Makes the worker and sends it what it needs before any request. */
  create: () => Worker;
  /** A reply's value, or the error its request rejects with. */
  settle: (reply: Reply) => { value: unknown } | { error: Error };
  /** The error every pending request rejects with when the worker fails or is closed. */
  failure: (message: string) => Error;
  /** The worker in that message: "the sealing worker" (it is followed by " failed: …"). */
  what: string;
  /** Told when a running worker is gone (failed or closed), so the caller can start over. */
  onGone?: () => void;
}

/** One helper worker's requests in flight. */
export class WorkerRequests<Req extends { id: number }, Reply extends { id: number }> {
  readonly #o: WorkerRequestsOptions<Reply>;
  #worker?: Worker;
  #nextId = 1;
  readonly #pending = new Map<number, PromiseWithResolvers<unknown>>();

  constructor(options: WorkerRequestsOptions<Reply>) {
    this.#o = options;
  }

  /** Whether a worker runs now. */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  /** Starts the worker now, unless one runs. */
  start(): Worker {
    return this.#worker ??= this.#make();
  }

  #make(): Worker {
    const worker = this.#o.create();
    worker.onmessage = (e: MessageEvent<Reply>) => {
      const p = this.#pending.get(e.data.id);
      if (!p) return;
      this.#pending.delete(e.data.id);
      const settled = this.#o.settle(e.data);
      if ("error" in settled) p.reject(settled.error);
      else p.resolve(settled.value);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      this.fail(`${this.#o.what} failed: ${e.message}`);
    };
    return worker;
  }

  /** Sends `request` under the next id, moving `moved`; resolves with its reply's value. */
  ask<T>(request: WithoutId<Req>, moved: Transferable[] = []): Promise<T> {
    const id = this.#nextId++;
    const p = Promise.withResolvers<unknown>();
    this.#pending.set(id, p);
    this.start().postMessage({ ...request, id }, moved);
    return p.promise as Promise<T>;
  }

  /** Rejects every pending request with `message` and stops the worker. */
  fail(message: string): void {
    for (const p of this.#pending.values()) p.reject(this.#o.failure(message));
    this.#pending.clear();
    const worker = this.#worker;
    this.#worker = undefined;
    worker?.terminate();
    if (worker) this.#o.onGone?.();
  }
}
