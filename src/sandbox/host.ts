import { MessageChannel as NodeMessageChannel } from "node:worker_threads";
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
const IMPORTS_PATH = new URL("./python/imports.py", import.meta.url);

let compiled: Promise<WebAssembly.Module> | undefined;
/**
 * Pyodide's wasm module, compiled once in this process and posted to every worker, which then
 * only instantiates it (tens of milliseconds less per boot than compiling from the file).
 */
function pyodideModule(): Promise<WebAssembly.Module> {
  return compiled ??= Deno.readFile(`${PYODIDE_DIR}pyodide.asm.wasm`).then((b) =>
    WebAssembly.compile(b)
  );
}

let runnerSource: string | undefined;
async function runner(): Promise<string> {
  return runnerSource ??= await Deno.readTextFile(RUNNER_PATH);
}
let lockdownSource: string | undefined;
async function lockdown(): Promise<string> {
  return lockdownSource ??= await Deno.readTextFile(LOCKDOWN_PATH);
}
let importsSource: string | undefined;
async function imports(): Promise<string> {
  return importsSource ??= await Deno.readTextFile(IMPORTS_PATH);
}

/**
 * Why an interpreter was lost: `timeout` (it did not stop when interrupted), `crashed` (its
 * worker died: exit, close, an uncaught error, a stack overflow), `fatal` (Pyodide itself
 * failed), `memory` (stopped because the server ran short of memory), `stopped` (its session
 * was deleted or reset, or the server is shutting down).
 */
export type KillReason = "timeout" | "crashed" | "fatal" | "memory" | "stopped";

/** How a call ended, seen from the host. */
export type ExecEnd =
  | { kind: "done"; message: ResultMessage; interrupted: boolean }
  | { kind: "killed"; reason: KillReason; detail: string };

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
  /** Preload packages that could not be had: importing them raises with the reason. */
  preloadUnavailable?: Unavailable[];
  /** The worker module; tests substitute one that dies on purpose. @default {worker.ts} */
  workerUrl?: URL;
}

/** The host's end of the lifeline: a node-style port, whose `close` event Deno does emit. */
interface LifelinePort {
  on(event: "close" | "message", listener: () => void): void;
  close(): void;
}

/** A worker that died while booting; the message says why. */
export class BootError extends Error {
  override name = "BootError";
}

/** One interpreter seen from the main thread: boot, call, interrupt, kill. */
export class Sandbox {
  readonly #worker: Worker;
  readonly #interrupt = new Int32Array(new SharedArrayBuffer(4));
  /** Written by the worker: [0] its linear memory in 64 KiB pages, current even mid-call. */
  readonly #stats = new Int32Array(new SharedArrayBuffer(4));
  readonly #lifeline: LifelinePort;
  readonly #lifelineEnd: MessagePort;
  #death?: { reason: KillReason; detail: string };
  #memoryBytes = 0;
  readonly #pending = new Map<number, (msg: WorkerMessage | Error) => void>();
  #nextId = 1;
  /** Canonical names of the packages installed in this interpreter. */
  readonly packages = new Set<string>();
  bootMs = 0;
  /**
   * Called once when the worker dies by itself or is killed (not on `terminate()`), also while
   * it is idle, so its owner can replace it at once.
   */
  onDeath?: (reason: KillReason, detail: string) => void;

  private constructor(network: string[] = [], workerUrl = WORKER_URL) {
    this.#worker = new Worker(workerUrl, {
      type: "module",
      deno: {
        permissions: {
          read: [PYODIDE_DIR, workerUrl.pathname, INSTALLER_URL.pathname],
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
      this.#die("crashed", `its worker failed: ${e.message}`);
    };
    this.#worker.onmessageerror = () => {};
    // Deno tells a host nothing when a worker exits or closes itself; a port the worker holds
    // does close then, so the host learns of every death within milliseconds, busy or idle.
    const channel = new NodeMessageChannel();
    this.#lifeline = channel.port1 as unknown as LifelinePort;
    this.#lifelineEnd = channel.port2 as unknown as MessagePort;
    this.#lifeline.on("message", () => {});
    this.#lifeline.on("close", () => this.#die("crashed", "its worker stopped unexpectedly"));
  }

  /** Linear memory of the interpreter: live, as the worker reports each growth. */
  get memoryBytes(): number {
    return Math.max(this.#memoryBytes, Atomics.load(this.#stats, 0) * 65536);
  }

  set memoryBytes(bytes: number) {
    this.#memoryBytes = bytes;
  }

  /** Boots an interpreter; resolves once it can take calls. */
  static async start(options: SandboxOptions): Promise<Sandbox> {
    const box = new Sandbox(options.network, options.workerUrl);
    const reply = await box.#request({
      ...(await box.#bootMessage(options, false)),
      snapshot: options.snapshot,
    }, [box.#lifelineEnd]);
    if (reply.type !== "ready") {
      box.terminate();
      throw new BootError(reply.type === "boot-failed" ? reply.message : "unexpected reply");
    }
    box.bootMs = reply.bootMs;
    box.memoryBytes = reply.memoryBytes;
    if (options.preload?.length || options.preloadUnavailable?.length) {
      // A wheel that fails here is simply not marked loaded: the call that asks for it reports why.
      const results = await box.install(
        options.preload ?? [],
        options.preloadUnavailable ?? [],
        PRELOAD_TIMEOUT_MS,
      );
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
      const reply = await box.#request(await box.#bootMessage({ limits }, true), [
        box.#lifelineEnd,
      ]);
      if (reply.type !== "snapshot") {
        throw new BootError(reply.type === "boot-failed" ? reply.message : "unexpected reply");
      }
      return reply.bytes;
    } finally {
      box.terminate();
    }
  }

  get alive(): boolean {
    return !this.#death;
  }

  /**
   * Runs code. After `timeoutMs` the host raises KeyboardInterrupt in Python; if the code has
   * not stopped `graceMs` later, the worker is terminated. Always settles within both.
   */
  async exec(
    code: string,
    timeoutMs: number,
    graceMs: number,
    authorizedImports?: string[],
  ): Promise<ExecEnd> {
    if (this.#death) return this.#killed();
    let interrupted = false;
    let grace: ReturnType<typeof setTimeout> | undefined;
    const timer = setTimeout(() => {
      interrupted = true;
      Atomics.store(this.#interrupt, 0, 2); // SIGINT, for Python that is running
      this.#worker.postMessage({ type: "interrupt", id: 0 }); // for Python that is awaiting
      grace = setTimeout(() => this.#die("timeout", "did not stop when interrupted"), graceMs);
    }, timeoutMs);
    try {
      // A flag set just as the previous call ended must not interrupt this one.
      Atomics.store(this.#interrupt, 0, 0);
      const reply = await this.#request({ type: "exec", id: 0, code, authorizedImports });
      if (reply.type !== "result") throw new Error("unexpected reply");
      this.memoryBytes = reply.memoryBytes;
      if (reply.fatal) {
        this.#die("fatal", reply.fatal, false);
        return this.#killed();
      }
      return { kind: "done", message: reply, interrupted };
    } catch (err) {
      this.#die("crashed", (err as Error).message);
      return this.#killed();
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
    }
  }

  /** Stops the worker at once, e.g. when the server runs short of memory; owners are told. */
  kill(reason: KillReason, detail: string): void {
    this.#die(reason, detail);
  }

  /** Stops the worker at once; a running call ends as `stopped`; `onDeath` is not called. */
  terminate(detail = "it is no longer needed"): void {
    this.#die("stopped", detail, false);
  }

  #killed(): ExecEnd {
    const { reason, detail } = this.#death ?? { reason: "crashed", detail: "unknown" };
    return { kind: "killed", reason, detail };
  }

  async #bootMessage(options: SandboxOptions, makeSnapshot: boolean): Promise<BootMessage> {
    const { limits } = options;
    return {
      type: "boot",
      id: 0,
      indexPath: PYODIDE_DIR,
      runner: await runner(),
      wasmModule: await pyodideModule(),
      makeSnapshot,
      memoryBytes: limits.memoryMb * 1024 * 1024,
      interrupt: this.#interrupt.buffer as SharedArrayBuffer,
      stats: this.#stats.buffer as SharedArrayBuffer,
      lifeline: this.#lifelineEnd,
      caps: {
        stdoutBytes: limits.stdoutBytes,
        stderrBytes: limits.stderrBytes,
        resultBytes: limits.resultBytes,
      },
      lockdown: await lockdown(),
      imports: await imports(),
      network: options.network ?? [],
      mounts: options.mounts ?? [],
    };
  }

  #request(msg: HostMessage, transfer: Transferable[] = []): Promise<WorkerMessage> {
    if (this.#death) return Promise.reject(new Error(this.#death.detail));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (reply) => reply instanceof Error ? reject(reply) : resolve(reply));
      this.#worker.postMessage({ ...msg, id }, transfer);
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

  /** The one way a worker ends; the first cause is kept, and the owner hears of it once. */
  #die(reason: KillReason, detail: string, notify = true): void {
    if (this.#death) return;
    this.#death = { reason, detail };
    this.#worker.terminate();
    this.#lifeline.close();
    const error = new Error(detail);
    for (const settle of this.#pending.values()) settle(error);
    this.#pending.clear();
    if (notify) this.onDeath?.(reason, detail);
  }
}
