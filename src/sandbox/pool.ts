import { Interpreter, type InterpreterOptions } from "./interpreter.ts";

/** How long after handing out an interpreter the pool starts its replacement. */
const REFILL_DELAY_MS = 100;
/**
 * Workers kept prepared for restores. Preparing one takes about 400 ms (a worker, Pyodide's
 * instantiate, faulting its heap in); with two, restores arriving 300 ms apart each still find
 * one ready (`deno task bench --durable`). Each holds about 30 MB.
 */
const PREPARED_WORKERS = 2;

/**
 * Pre-started interpreters, so a new session does not wait for Pyodide to boot. The pool refills
 * in the background, one boot at a time: boots compete with running calls for the CPU.
 */
export class Pool {
  readonly #ready: Interpreter[] = [];
  #starting = 0;
  #closed = false;
  #failures = 0;
  /** Workers with Pyodide instantiated, waiting for a checkpoint to restore (durable only). */
  readonly #prepared: Interpreter[] = [];

  constructor(
    private readonly size: number,
    private readonly options: InterpreterOptions,
    private readonly log: (line: string) => void = () => {},
    /** Told of every boot: its time in ms, or undefined when it failed (for the metrics). */
    private readonly onBoot: (ms: number | undefined) => void = () => {},
  ) {}

  /** Number of interpreters ready to hand out now. */
  get ready(): number {
    return this.#ready.length;
  }

  /** Hands out a ready interpreter, or boots one when none is ready; refills behind. */
  async take(): Promise<Interpreter> {
    const interpreter = this.#ready.shift();
    // The refill waits a moment: starting a worker blocks this thread for a few milliseconds and
    // its boot takes a core, just when the new session's first call usually arrives.
    setTimeout(() => this.fill(), REFILL_DELAY_MS);
    if (interpreter) {
      interpreter.onDeath = undefined;
      return interpreter;
    }
    return await this.#start();
  }

  /**
   * Restores a checkpoint into the prepared worker (no worker start, no wasm instantiate on this
   * path), or into a new one when none is ready; prepares the next one behind. A prepared worker
   * serves this one session and is never handed to another.
   */
  async restore(options: InterpreterOptions): Promise<Interpreter> {
    // A ready one first; else the one furthest along.
    const ready = this.#prepared.findIndex((p) => p.prepared);
    const [prepared] = this.#prepared.splice(Math.max(ready, 0), 1);
    if (prepared) prepared.onDeath = undefined;
    setTimeout(() => this.#prepare(), REFILL_DELAY_MS);
    return await Interpreter.start(options, prepared);
  }

  /**
   * Keeps PREPARED_WORKERS workers prepared for restores, when checkpoints are on (a delta base
   * is set): one at a time, as each takes a core while it starts.
   */
  #prepare(): void {
    const { snapshot, deltaBase } = this.options;
    if (this.#closed || !snapshot || !deltaBase) return;
    if (this.#prepared.length >= PREPARED_WORKERS) return;
    if (this.#prepared.some((p) => !p.prepared)) return; // one is starting
    const prepared = Interpreter.prepare({ ...this.options, snapshot });
    prepared.onDeath = () => {
      const at = this.#prepared.indexOf(prepared);
      if (at >= 0) this.#prepared.splice(at, 1);
    };
    this.#prepared.push(prepared);
    prepared.preparing?.then(() => this.#prepare());
  }

  /** Starts an interpreter in the background unless `size` are ready or one is starting. */
  fill(): void {
    if (this.#closed || this.#starting > 0 || this.#ready.length >= this.size) return;
    this.#starting++;
    this.#start().then(
      (interpreter) => {
        this.#failures = 0;
        this.#add(interpreter);
      },
      (err) => {
        this.#failures++;
        this.log(`a pre-started interpreter failed to boot: ${err.message}`);
      },
    ).finally(() => {
      this.#starting--;
      // Back off after failures so a broken installation does not spin.
      if (this.#failures === 0) this.fill();
      else if (this.#failures < 5) setTimeout(() => this.fill(), 1000 * this.#failures);
    });
  }

  /** Resolves once `size` interpreters are ready (for start-up), booting them side by side. */
  async warm(): Promise<void> {
    const missing = this.size - this.#ready.length - this.#starting;
    const boots = Array.from({ length: Math.max(0, missing) }, () => {
      this.#starting++;
      return this.#start().then(
        (interpreter) => this.#add(interpreter),
        (err) => {
          this.#failures++;
          this.log(`a pre-started interpreter failed to boot: ${err.message}`);
        },
      ).finally(() => this.#starting--);
    });
    await Promise.all(boots);
    this.#prepare();
  }

  #start(): Promise<Interpreter> {
    return Interpreter.start(this.options).then((interpreter) => {
      this.onBoot(interpreter.bootMs);
      return interpreter;
    }, (err) => {
      this.onBoot(undefined);
      throw err;
    });
  }

  #add(interpreter: Interpreter): void {
    if (this.#closed) return interpreter.terminate("the server is shutting down");
    // A ready interpreter that dies while it waits is dropped, and another one started.
    interpreter.onDeath = (_reason, detail) => {
      const at = this.#ready.indexOf(interpreter);
      if (at >= 0) this.#ready.splice(at, 1);
      this.log(`a pre-started interpreter died while waiting (${detail}); starting another`);
      this.fill();
    };
    this.#ready.push(interpreter);
  }

  /** Terminates every ready interpreter and stops refilling. */
  close(): void {
    this.#closed = true;
    for (const prepared of this.#prepared.splice(0)) {
      prepared.terminate("the server is shutting down");
    }
    for (const interpreter of this.#ready.splice(0)) {
      interpreter.terminate("the server is shutting down");
    }
  }
}
