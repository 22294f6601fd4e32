import { Interpreter, type InterpreterOptions } from "./interpreter.ts";

/** How long after handing out an interpreter the pool starts its replacement. */
const REFILL_DELAY_MS = 100;

/**
 * Pre-started interpreters, so a new session does not wait for Pyodide to boot. The pool refills
 * in the background, one boot at a time: boots compete with running calls for the CPU.
 */
export class Pool {
  readonly #ready: Interpreter[] = [];
  #starting = 0;
  #closed = false;
  #failures = 0;
  /** A worker with Pyodide instantiated, waiting for a checkpoint to restore (durable only). */
  #prepared?: Interpreter;

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
    const prepared = this.#prepared;
    this.#prepared = undefined;
    if (prepared) prepared.onDeath = undefined;
    setTimeout(() => this.#prepare(), REFILL_DELAY_MS);
    return await Interpreter.start(options, prepared);
  }

  /** Keeps one worker prepared for restores, when checkpoints are on (a delta base is set). */
  #prepare(): void {
    const { snapshot, deltaBase } = this.options;
    if (this.#closed || this.#prepared?.alive || !snapshot || !deltaBase) return;
    const prepared = Interpreter.prepare({ ...this.options, snapshot });
    prepared.onDeath = () => {
      if (this.#prepared === prepared) this.#prepared = undefined;
    };
    this.#prepared = prepared;
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
    this.#prepared?.terminate("the server is shutting down");
    this.#prepared = undefined;
    for (const interpreter of this.#ready.splice(0)) {
      interpreter.terminate("the server is shutting down");
    }
  }
}
