import { Sandbox, type SandboxOptions } from "./host.ts";

/** Pre-started interpreters, so a new session does not wait for Pyodide to boot. */
export class Pool {
  readonly #ready: Sandbox[] = [];
  #starting = 0;
  #closed = false;
  #failures = 0;

  constructor(
    private readonly size: number,
    private readonly options: SandboxOptions,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Number of interpreters ready to hand out now. */
  get ready(): number {
    return this.#ready.length;
  }

  /** Hands out a ready interpreter, or boots one when none is ready; refills behind. */
  async take(): Promise<Sandbox> {
    let box: Sandbox | undefined;
    while ((box = this.#ready.shift()) && !box.alive);
    this.fill();
    return box ?? await Sandbox.start(this.options);
  }

  /** Starts interpreters in the background until `size` are ready or starting. */
  fill(): void {
    while (!this.#closed && this.#ready.length + this.#starting < this.size) {
      this.#starting++;
      Sandbox.start(this.options).then(
        (box) => {
          this.#failures = 0;
          if (this.#closed) box.terminate();
          else this.#ready.push(box);
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
  }

  /** Resolves once `size` interpreters are ready (for start-up). */
  async warm(): Promise<void> {
    this.fill();
    while (!this.#closed && this.#ready.length < this.size && this.#failures < 5) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Terminates every ready interpreter and stops refilling. */
  close(): void {
    this.#closed = true;
    for (const box of this.#ready.splice(0)) box.terminate();
  }
}
