import type { Unavailable, WheelBytes } from "../packages/install.ts";
import type { Limits } from "../policy/schema.ts";
import {
  type BootMessage,
  type HostMessage,
  type MountEntry,
  type ResultMessage,
  type WorkerMessage,
  WorkerMessageSchema,
} from "./messages.ts";

/** Where Pyodide's files are; the only directory a worker may read, and only while it boots. */
export const PYODIDE_DIR = new URL("../../node_modules/pyodide/", import.meta.url).pathname;
/** How long installing the preload list into a fresh interpreter may take. */
const PRELOAD_TIMEOUT_MS = 120_000;
const WORKER_URL = new URL("./worker.ts", import.meta.url);
/** The worker's one import besides Pyodide: installing wheels it is sent as bytes. */
const INSTALLER_URL = new URL("../packages/install.ts", import.meta.url);
const RUNNER_PATH = new URL("./python/runner.py", import.meta.url);
const LOCKDOWN_PATH = new URL("./python/lockdown.py", import.meta.url);

let runnerSource: string | undefined;
async function runner(): Promise<string> {
  return runnerSource ??= await Deno.readTextFile(RUNNER_PATH);
}
let lockdownSource: string | undefined;
async function lockdown(): Promise<string> {
  return lockdownSource ??= await Deno.readTextFile(LOCKDOWN_PATH);
}

/** How a call ended, seen from the host. */
export type ExecEnd =
  | { kind: "done"; message: ResultMessage; interrupted: boolean }
  | { kind: "killed"; reason: "timeout" | "crashed" | "fatal"; detail: string };

/** Options for one sandbox: the policy's limits. */
export interface SandboxOptions {
  limits: Limits;
  /** Memory snapshot to boot from; cold boot when absent. */
  snapshot?: Uint8Array;
  /** Hosts Python may reach (the policy's network.allow); the worker gets net for these only. */
  network?: string[];
  /** The policy's mounts, already read (see `sandbox/mounts.ts`). */
  mounts?: MountEntry[];
  /** Wheels installed right after boot, before the interpreter takes calls (policy `preload`). */
  preload?: WheelBytes[];
}

/** A worker that died while booting; the message says why. */
export class BootError extends Error {
  override name = "BootError";
}

/** One interpreter seen from the main thread: boot, call, interrupt, kill. */
export class Sandbox {
  readonly #worker: Worker;
  readonly #interrupt = new Int32Array(new SharedArrayBuffer(4));
  readonly #pending = new Map<number, (msg: WorkerMessage | Error) => void>();
  #nextId = 1;
  #dead = false;
  /** Canonical names of the packages installed in this interpreter. */
  readonly packages = new Set<string>();
  /** Linear memory of the interpreter after its last call. */
  memoryBytes = 0;
  bootMs = 0;

  private constructor(network: string[] = []) {
    this.#worker = new Worker(WORKER_URL, {
      type: "module",
      deno: {
        permissions: {
          read: [PYODIDE_DIR, WORKER_URL.pathname, INSTALLER_URL.pathname],
          write: false,
          net: network.length ? network : false, // security: only the policy's hosts
          env: false,
          run: false,
          ffi: false,
          sys: false,
          import: false,
        },
      },
    });
    this.#worker.onmessage = (e) => this.#receive(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#die(new Error(`the interpreter's worker failed: ${e.message}`));
    };
    this.#worker.onmessageerror = () => {};
  }

  /** Boots an interpreter; resolves once it can take calls. */
  static async start(options: SandboxOptions): Promise<Sandbox> {
    const box = new Sandbox(options.network);
    const reply = await box.#request({
      ...(await box.#bootMessage(options, false)),
      snapshot: options.snapshot,
    });
    if (reply.type !== "ready") {
      box.terminate();
      throw new BootError(reply.type === "boot-failed" ? reply.message : "unexpected reply");
    }
    box.bootMs = reply.bootMs;
    box.memoryBytes = reply.memoryBytes;
    if (options.preload?.length) {
      // A wheel that fails here is simply not marked loaded: the call that asks for it reports why.
      const results = await box.install(options.preload, [], PRELOAD_TIMEOUT_MS);
      if (!box.alive) {
        throw new BootError(`installing the preload packages failed: ${results[0]?.error}`);
      }
    }
    return box;
  }

  /**
   * Installs wheels the host fetched (see src/packages/). Names that installed are added to
   * `packages`; the rest come back with the interpreter's error. A worker that does not answer
   * within `timeoutMs` is terminated, since an install cannot be interrupted halfway.
   */
  async install(
    wheels: WheelBytes[],
    unavailable: Unavailable[],
    timeoutMs: number,
  ): Promise<{ name: string; error?: string }[]> {
    if (wheels.length === 0 && unavailable.length === 0) return [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("installing took longer than the call's time limit")),
        timeoutMs,
      );
    });
    try {
      const reply = await Promise.race([
        this.#request({ type: "install", id: 0, wheels, unavailable }),
        timedOut,
      ]);
      if (reply.type !== "installed") throw new Error("unexpected reply");
      this.memoryBytes = reply.memoryBytes;
      for (const r of reply.results) if (!r.error) this.packages.add(r.name);
      return reply.results;
    } catch (err) {
      this.terminate();
      return wheels.map((w) => ({ name: w.name, error: (err as Error).message }));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Boots cold in a throw-away worker and returns its memory snapshot. */
  static async makeSnapshot(limits: Limits): Promise<Uint8Array> {
    const box = new Sandbox();
    try {
      const reply = await box.#request(await box.#bootMessage({ limits }, true));
      if (reply.type !== "snapshot") {
        throw new BootError(reply.type === "boot-failed" ? reply.message : "unexpected reply");
      }
      return reply.bytes;
    } finally {
      box.terminate();
    }
  }

  get alive(): boolean {
    return !this.#dead;
  }

  /**
   * Runs code. After `timeoutMs` the host raises KeyboardInterrupt in Python; if the code has
   * not stopped `graceMs` later, the worker is terminated. Always settles within both.
   */
  async exec(code: string, timeoutMs: number, graceMs: number): Promise<ExecEnd> {
    if (this.#dead) return { kind: "killed", reason: "crashed", detail: "the interpreter is gone" };
    let interrupted = false;
    let killed = false;
    let grace: ReturnType<typeof setTimeout> | undefined;
    const timer = setTimeout(() => {
      interrupted = true;
      Atomics.store(this.#interrupt, 0, 2); // SIGINT
      grace = setTimeout(() => {
        killed = true;
        this.#die(new Error("did not stop when interrupted"));
      }, graceMs);
    }, timeoutMs);
    try {
      const reply = await this.#request({ type: "exec", id: 0, code });
      if (reply.type !== "result") throw new Error("unexpected reply");
      this.memoryBytes = reply.memoryBytes;
      if (reply.fatal) {
        this.terminate();
        return { kind: "killed", reason: "fatal", detail: reply.fatal };
      }
      return { kind: "done", message: reply, interrupted };
    } catch (err) {
      this.terminate();
      if (killed) return { kind: "killed", reason: "timeout", detail: (err as Error).message };
      return { kind: "killed", reason: "crashed", detail: (err as Error).message };
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
    }
  }

  /** Stops the worker at once; pending calls settle as crashed. */
  terminate(): void {
    this.#die(new Error("terminated"));
  }

  async #bootMessage(options: SandboxOptions, makeSnapshot: boolean): Promise<BootMessage> {
    const { limits } = options;
    return {
      type: "boot",
      id: 0,
      indexPath: PYODIDE_DIR,
      runner: await runner(),
      makeSnapshot,
      memoryBytes: limits.memoryMb * 1024 * 1024,
      interrupt: this.#interrupt.buffer as SharedArrayBuffer,
      caps: {
        stdoutBytes: limits.stdoutBytes,
        stderrBytes: limits.stderrBytes,
        resultBytes: limits.resultBytes,
      },
      lockdown: await lockdown(),
      network: options.network ?? [],
      mounts: options.mounts ?? [],
    };
  }

  #request(msg: HostMessage): Promise<WorkerMessage> {
    if (this.#dead) return Promise.reject(new Error("the interpreter is gone"));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (reply) => reply instanceof Error ? reject(reply) : resolve(reply));
      this.#worker.postMessage({ ...msg, id });
    });
  }

  #receive(data: unknown): void {
    const parsed = WorkerMessageSchema.safeParse(data);
    if (!parsed.success) return; // not something the host asked for
    const settle = this.#pending.get(parsed.data.id);
    if (!settle) return;
    this.#pending.delete(parsed.data.id);
    settle(parsed.data);
  }

  #die(reason: Error): void {
    if (!this.#dead) {
      this.#dead = true;
      this.#worker.terminate();
    }
    for (const settle of this.#pending.values()) settle(reason);
    this.#pending.clear();
  }
}
