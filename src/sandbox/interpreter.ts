/**
 * One interpreter seen from the main thread: boot, call, install, interrupt, kill, and notice
 * its death at once. Python never runs on this thread.
 */
import { MessageChannel as NodeMessageChannel } from "node:worker_threads";
import { PYODIDE_DIR, WORKER_URL } from "../paths.ts";
import { workerPermissions } from "./worker_permissions.ts";
import type { Limits } from "../policy/schema.ts";
import { messageOf } from "../worker/errors.ts";
import { movable } from "../codec/transfer.ts";
import {
  type BootRequest,
  type ExecReply,
  type FileKind,
  type HostMessage,
  type InstallResult,
  type MountEntry,
  type Reply,
  ReplySchemas,
  type RequestKind,
  type Requests,
  type Restored,
  type Unavailable,
  type WheelBytes,
  WorkerEnvelopeSchema,
  WorkerNoticeSchema,
} from "../protocol/messages.ts";
import { type Answered, type CallTools, ToolChannel, type ToolOutcome } from "./tool_calls.ts";
import { KILL_SIGNAL } from "../worker/kill_switch.ts";
import { LiveOutput, type OutputHook } from "./live_output.ts";

export type { OutputHook };
import { checkBase, snapshotId } from "./base_check.ts";
import { BootError } from "./boot_error.ts";
import { pyodideModule, pythonSources } from "./sources.ts";

/** How long installing the preload list into a fresh interpreter may take. */
const PRELOAD_TIMEOUT_MS = 120_000;

/**
 * Why an interpreter was lost: `timeout` (it did not stop when interrupted), `crashed` (its
 * worker died: exit, close, an uncaught error, a stack overflow), `fatal` (Pyodide itself
 * failed), `memory` (stopped because the server ran short of memory), `stopped` (its session
 * was deleted or reset, or the server is shutting down).
 */
/** Requests bounded by their own timer (a call's, an install's) or made before any policy. */
const SELF_BOUNDED = new Set<RequestKind>(["exec", "install", "prepare", "snapshot"]);
/** A boot may restore a big checkpoint: it gets at least this long, whatever the call limit. */
const BOOT_DEADLINE_MS = 60_000;

export type KillReason = "timeout" | "crashed" | "fatal" | "memory" | "stopped";

/** How a call ended, seen from the host. */
export type ExecEnd =
  | { kind: "done"; reply: ExecReply; interrupted: boolean }
  | { kind: "killed"; reason: KillReason; detail: string };

/** One call's settings (see `Interpreter.exec`). */
export interface ExecOptions {
  timeoutMs: number;
  graceMs: number;
  /** The call's authorized imports; absent for no rule. */
  authorizedImports?: string[];
  /** Receives the output while the call runs. */
  onOutput?: OutputHook;
  /** The call's host tools and who answers them; absent: none. */
  tools?: CallTools;
}

/** Options for one interpreter: the policy's limits and what every boot gets. */
export interface InterpreterOptions {
  limits: Limits;
  /** Memory snapshot to boot from; cold boot when absent. */
  snapshot?: Uint8Array;
  /**
   * Hosts Python may reach (the policy's network.allow): with any, Python's HTTP clients are
   * wired to the host, which sends each request; the worker itself never gets net.
   */
  network?: string[];
  /** The policy's mounts, already read (see `sandbox/mounts.ts`). */
  mounts?: MountEntry[];
  /** Wheels installed right after boot, before the interpreter takes calls (policy `preload`). */
  preload?: WheelBytes[];
  /** Preload packages that could not be had: importing them raises with the reason. */
  preloadUnavailable?: Unavailable[];
  /** The worker module; tests substitute one that dies on purpose. @default {worker/main.ts} */
  workerUrl?: URL;
  /** Restore this checkpoint (authenticated by the store) instead of a fresh session. */
  checkpoint?: Uint8Array<ArrayBuffer>;
  /** The checkpoint's memory: its chain of deltas over `deltaBase`, oldest first. */
  links?: Uint8Array<ArrayBuffer>[];
  /** The image checkpoints are deltas against (see `delta_base.ts`); `snapshot` when absent. */
  deltaBase?: Uint8Array;
}

/** The host's end of the lifeline: a node-style port, whose `close` event Deno does emit. */
interface LifelinePort {
  on(event: "close" | "message", listener: () => void): void;
  close(): void;
}

/**
 * How long a stopped worker may take to end before it is counted as stuck. A worker ends within
 * milliseconds when its thread gets a core; this also bounds how long the memory watchdog counts
 * its memory as on its way out.
 */
const EXIT_WAIT_MS = 30_000;

/**
 * Workers stopped more than `EXIT_WAIT_MS` ago whose thread still runs: Python busy inside one C
 * function that never checks for signals (`sum(range(10**18))`), which neither the kill switch
 * nor Deno's `terminate()` can stop (denoland/deno#35657). Each keeps a core (at nice 15) and its
 * memory until that function returns or the server restarts.
 */
const stuck = new Set<Interpreter>();

/** How many stopped workers have not ended (see `stuck`), for `/health` and `/metrics`. */
export function stuckWorkers(): number {
  return stuck.size;
}

/** The memory stuck workers hold (as they last reported it), which no session holds any more. */
export function stuckBytes(): number {
  let bytes = 0;
  for (const interpreter of stuck) bytes += interpreter.memoryBytes;
  return bytes;
}

/** A request the worker answered with an error, or did not answer as its kind requires. */
class WorkerFailed extends Error {}

/** One interpreter seen from the main thread: boot, call, interrupt, kill. */
export class Interpreter {
  readonly #worker: Worker;
  readonly #interrupt = new Int32Array(new SharedArrayBuffer(4));
  /**
   * Written by the worker: [0] its linear memory in 64 KiB pages, current even mid-call; [1] its
   * files in KiB; [2] the id of the last request it answered, set before the answer is posted.
   */
  readonly #stats = new Int32Array(new SharedArrayBuffer(12));
  readonly #lifeline: LifelinePort;
  readonly #lifelineEnd: MessagePort;
  /** Whether the worker holds the lifeline's end (sent with its first request). */
  #lifelineSent = false;
  /**
   * Settles once the worker's thread has ended after it died or was stopped, so its memory is
   * back with the system; or `EXIT_WAIT_MS` after the stop, when it is counted as stuck instead.
   * Never rejects.
   */
  readonly exited: Promise<void>;
  readonly #exit: () => void;
  #exitTimer?: ReturnType<typeof setTimeout>;
  #death?: { reason: KillReason; detail: string };
  #memoryBytes = 0;
  readonly #pending = new Map<
    number,
    { kind: RequestKind; settle: (reply: unknown, error?: Error) => void }
  >();
  #nextId = 1;
  /** The running call's live output, when it asked for it. */
  #live?: LiveOutput;
  /** Where host tool calls are answered; made by the first call that has tools. */
  #tools?: ToolChannel;
  /** The policy's output caps, which bound live output too (the worker applies them first). */
  #caps = { stdoutBytes: 0, stderrBytes: 0, resultBytes: 0 };
  /** The policy's limits, once booting: `timeoutMs` and `graceMs` bound every request. */
  #limits?: Limits;
  /** Canonical names of the packages installed in this interpreter. */
  readonly packages = new Set<string>();
  bootMs = 0;
  /** Set by `prepare`: settles once the worker's wasm is instantiated. */
  #prepared?: Promise<void>;
  #preparedDone = false;

  /** A prepared worker (`prepare`) that has instantiated Pyodide: a restore into it starts now. */
  get prepared(): boolean {
    return this.#preparedDone && this.alive;
  }

  /** Settles once a prepared worker is ready (or failed); undefined for other interpreters. */
  get preparing(): Promise<void> | undefined {
    return this.#prepared?.catch(() => {});
  }
  /** Set when this interpreter was restored from a checkpoint: what could not be restored. */
  restored?: Restored;
  /**
   * sha256 of the image its checkpoints are deltas against (`deltaBase`): the base of its own
   * pool, or the one the checkpoint it was restored from named, which may be another's.
   */
  baseId?: string;
  /**
   * Called once when the worker dies by itself or is killed (not on `terminate()`), also while
   * it is idle, so its owner can replace it at once.
   */
  onDeath?: (reason: KillReason, detail: string) => void;

  private constructor(workerUrl = WORKER_URL) {
    this.#worker = new Worker(workerUrl, {
      type: "module",
      deno: { permissions: workerPermissions(workerUrl) },
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
    const exited = Promise.withResolvers<void>();
    this.exited = exited.promise;
    this.#exit = exited.resolve;
    this.#lifeline.on("close", () => {
      clearTimeout(this.#exitTimer);
      stuck.delete(this);
      exited.resolve();
      this.#die("crashed", "its worker stopped unexpectedly");
    });
  }

  /**
   * Memory the interpreter holds: its linear memory, live as the worker reports each growth, and
   * its files, which live in JavaScript buffers outside it.
   */
  get memoryBytes(): number {
    return Math.max(this.#memoryBytes, Atomics.load(this.#stats, 0) * 65536) +
      Atomics.load(this.#stats, 1) * 1024;
  }

  /**
   * Starts a worker that makes Pyodide's module and instantiates its wasm, then waits for
   * `start` to restore a checkpoint into it: no worker start and no instantiate on that path.
   * It holds nothing of any session until then, and serves one session only.
   */
  static prepare(options: InterpreterOptions & { snapshot: Uint8Array }): Interpreter {
    const interpreter = new Interpreter(options.workerUrl);
    interpreter.#prepared = (async () => {
      const lifeline = interpreter.#lifelineEnd;
      const wasmModule = await pyodideModule();
      const request = { indexPath: PYODIDE_DIR, wasmModule, snapshot: options.snapshot, lifeline };
      await interpreter.#request("prepare", request, [lifeline]);
    })();
    interpreter.#prepared.then(
      () => interpreter.#preparedDone = true,
      () => interpreter.terminate(),
    );
    return interpreter;
  }

  /**
   * Boots an interpreter; resolves once it can take calls. `prepared` (from `prepare`, with the
   * same network) is booted instead of a new worker.
   */
  static async start(options: InterpreterOptions, prepared?: Interpreter): Promise<Interpreter> {
    if (options.checkpoint) await checkBase(options.checkpoint, options.deltaBase);
    const interpreter = prepared?.alive ? prepared : new Interpreter(options.workerUrl);
    interpreter.#caps = options.limits;
    interpreter.#limits = options.limits;
    if (options.deltaBase) interpreter.baseId = await snapshotId(options.deltaBase);
    try {
      const request = await interpreter.#bootRequest(options);
      // The checkpoint is this boot's alone: moved to the worker, not copied on this thread.
      const moved = options.checkpoint
        ? [options.checkpoint, ...options.links ?? []].flatMap(movable)
        : [];
      const ready = await interpreter.#request(
        "boot",
        interpreter === prepared ? { ...request, lifeline: undefined } : request,
        interpreter === prepared ? moved : [interpreter.#lifelineEnd, ...moved],
      );
      interpreter.bootMs = ready.bootMs;
      interpreter.#memoryBytes = ready.memoryBytes;
      interpreter.restored = ready.restored;
      for (const name of ready.restored?.packages ?? []) interpreter.packages.add(name);
    } catch (err) {
      interpreter.terminate();
      throw new BootError(messageOf(err));
    }
    // A restored image already holds the preload it was checkpointed with.
    const preload = (options.preload ?? []).filter((w) => !interpreter.packages.has(w.name));
    if (preload.length || options.preloadUnavailable?.length) {
      // A wheel that fails here is simply not marked loaded: the call that asks for it reports why.
      const results = await interpreter.install(
        preload,
        options.preloadUnavailable ?? [],
        PRELOAD_TIMEOUT_MS,
      );
      if (!interpreter.alive) {
        throw new BootError(`installing the preload packages failed: ${results[0]?.error}`);
      }
    }
    return interpreter;
  }

  /** Boots cold in a throw-away worker and returns its memory snapshot. */
  static async makeSnapshot(): Promise<Uint8Array> {
    const interpreter = new Interpreter();
    try {
      const lifeline = interpreter.#lifelineEnd;
      const request = { indexPath: PYODIDE_DIR, wasmModule: await pyodideModule(), lifeline };
      return (await interpreter.#request("snapshot", request, [lifeline])).bytes;
    } catch (err) {
      throw new BootError(messageOf(err));
    } finally {
      interpreter.terminate();
    }
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
  ): Promise<InstallResult[]> {
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
        this.#request("install", { wheels, unavailable }),
        timedOut,
      ]);
      this.#memoryBytes = reply.memoryBytes;
      for (const r of reply.results) if (!r.error) this.packages.add(r.name);
      return reply.results;
    } catch (err) {
      // Past its time an install cannot be interrupted halfway: the worker goes. A worker that
      // died meanwhile (the memory watchdog) keeps the reason it died for.
      this.#die("timeout", "loading packages used up the time limit", false);
      return wheels.map((w) => ({ name: w.name, error: messageOf(err) }));
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return !this.#death;
  }

  /**
   * Runs code. After `timeoutMs` the host raises KeyboardInterrupt in Python; if the code has
   * not stopped `graceMs` later (twice that when Python took the interrupt and is unwinding),
   * the worker is terminated. Always settles within these.
   * `onOutput` receives the output while the call runs, all of it before this settles.
   */
  async exec(code: string, options: ExecOptions): Promise<ExecEnd> {
    const { timeoutMs, graceMs, authorizedImports, onOutput, tools } = options;
    if (this.#death) return this.#killed();
    let interrupted = false;
    let grace: (() => void) | undefined;
    const id = this.#nextId; // the id #request gives this call
    const timer = setTimeout(() => {
      interrupted = true;
      Atomics.store(this.#interrupt, 0, 2); // SIGINT, for Python that is running
      this.#tools?.wake(); // for Python waiting for a tool's answer
      this.#worker.postMessage({ kind: "interrupt" } satisfies HostMessage); // for awaiting
      grace = this.#graceThen(
        id,
        graceMs,
        () => this.#die("timeout", "did not stop when interrupted"),
      );
    }, timeoutMs);
    try {
      // A flag set just as the previous call ended must not interrupt this one.
      Atomics.store(this.#interrupt, 0, 0);
      this.#live = onOutput && new LiveOutput(onOutput, this.#caps);
      const channel = tools && (this.#tools ??= new ToolChannel(this.#caps.resultBytes));
      const reply = await this.#request("exec", {
        code,
        authorizedImports,
        stream: !!onOutput,
        ...channel?.begin(tools!),
      });
      this.#memoryBytes = reply.memoryBytes;
      if (reply.fatal) {
        this.#die("fatal", reply.fatal, false);
        return this.#killed();
      }
      return { kind: "done", reply, interrupted };
    } catch (err) {
      this.#die("crashed", messageOf(err));
      return this.#killed();
    } finally {
      this.#live = undefined;
      this.#tools?.end();
      clearTimeout(timer);
      grace?.();
    }
  }

  /** A files API request (`src/files/ops.ts`), answered between calls. */
  file<K extends FileKind>(kind: K, body: Requests[K], transfer: Transferable[] = []) {
    return this.#request(kind, body, transfer);
  }

  /**
   * Checkpoints the interpreter between calls (never while a call runs): its memory as a delta
   * against its checkpoint `against` (a generation it gave, stored since), else against the base
   * whose sha256 is `baseId`. The interpreter keeps working.
   */
  async checkpoint(baseId: string, against?: number): Promise<Reply<"checkpoint">> {
    if (this.#death) throw new Error(this.#death.detail);
    return await this.#request("checkpoint", { baseId, against });
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

  async #bootRequest(options: InterpreterOptions): Promise<BootRequest> {
    const { limits } = options;
    return {
      indexPath: PYODIDE_DIR,
      python: await pythonSources(),
      wasmModule: await pyodideModule(),
      snapshot: options.snapshot,
      memoryBytes: limits.memoryMb * 1024 * 1024,
      filesBytes: limits.filesBytes,
      interrupt: this.#interrupt.buffer as SharedArrayBuffer,
      stats: this.#stats.buffer as SharedArrayBuffer,
      lifeline: this.#lifelineEnd,
      caps: {
        stdoutBytes: limits.stdoutBytes,
        stderrBytes: limits.stderrBytes,
        resultBytes: limits.resultBytes,
      },
      network: options.network ?? [],
      mounts: options.mounts ?? [],
      checkpoint: options.checkpoint,
      links: options.links,
      deltaBase: options.deltaBase,
    };
  }

  /** Sends one request; resolves with its reply, checked against the schema of its kind. */
  #request<K extends RequestKind>(
    kind: K,
    body: Requests[K],
    transfer: Transferable[] = [],
  ): Promise<Reply<K>> {
    if (this.#death) return Promise.reject(new Error(this.#death.detail));
    const id = this.#nextId++;
    const answer = new Promise<Reply<K>>((resolve, reject) => {
      this.#pending.set(id, {
        kind,
        settle: (reply, error) => error ? reject(error) : resolve(reply as Reply<K>),
      });
      this.#worker.postMessage({ ...body, kind, id } as HostMessage, transfer);
    });
    if (transfer.includes(this.#lifelineEnd as unknown as Transferable)) this.#lifelineSent = true;
    const limits = this.#limits;
    if (!limits || SELF_BOUNDED.has(kind)) return answer;
    const ms = kind === "boot" ? Math.max(limits.timeoutMs, BOOT_DEADLINE_MS) : limits.timeoutMs;
    return this.#bounded(kind, id, answer, ms);
  }

  /**
   * Nothing waits on a worker for ever: Python still running after its call (a callback the code
   * left on the event loop, a finalizer) would hold every later request. Past `ms` the running
   * Python is interrupted (it gets KeyboardInterrupt and the request goes on, which may take its
   * own time again); if the worker has still not answered `ms` later it is stopped, and replaced
   * by its owner, and the request fails saying why.
   */
  #bounded<T>(kind: RequestKind, id: number, answer: Promise<T>, ms: number): Promise<T> {
    let interrupted = false;
    let grace: (() => void) | undefined;
    const timer = setTimeout(() => {
      interrupted = true;
      Atomics.store(this.#interrupt, 0, 2);
      grace = this.#graceThen(id, ms, () =>
        this.#die(
          "timeout",
          `it did not answer a '${kind}' request within ${2 * ms} ms: Python kept ` +
            "running after its call had ended",
        ));
    }, ms);
    return answer.finally(() => {
      clearTimeout(timer);
      grace?.();
      // An interrupt that found no Python running must not hit Moat's own next step.
      if (interrupted) Atomics.store(this.#interrupt, 0, 0);
    });
  }

  /** A client's answer to tool call `id` of the running call (see `tool_calls.ts`). */
  answerTool(id: string, outcome: ToolOutcome): Answered {
    return this.#tools?.answer(id, outcome) ?? "unknown";
  }

  #receive(data: unknown): void {
    const envelope = WorkerEnvelopeSchema.safeParse(data);
    if (!envelope.success) {
      const notice = WorkerNoticeSchema.safeParse(data);
      if (!notice.success) return; // not something the host asked for
      if (notice.data.notice === "output") return this.#live?.receive(notice.data);
      if (notice.data.notice === "http") return this.#tools?.receiveHttp(notice.data);
      return this.#tools?.receive(notice.data);
    }
    const pending = this.#pending.get(envelope.data.id);
    if (!pending) return;
    this.#pending.delete(envelope.data.id);
    if (!envelope.data.ok) {
      return pending.settle(undefined, new WorkerFailed(envelope.data.message));
    }
    const reply = ReplySchemas[pending.kind].safeParse(envelope.data.reply);
    if (reply.success) pending.settle(reply.data);
    else pending.settle(undefined, new WorkerFailed(`malformed '${pending.kind}' reply`));
  }

  /**
   * After an interrupt, waits `graceMs` and then calls `stop`, unless the worker has answered
   * request `id` (its answer is on its way: this thread was only late to read it) or Python has
   * taken the interrupt (Pyodide clears the flag when it raises KeyboardInterrupt) and is still
   * unwinding: then once more `graceMs`, so a loaded machine does not cost a session its state.
   * Code that swallows the KeyboardInterrupt is stopped at the end of the second wait.
   */
  #graceThen(id: number, graceMs: number, stop: () => void): () => void {
    let extended = false;
    const check = () => {
      if (this.#death || Atomics.load(this.#stats, 2) >= id) return;
      if (!extended && Atomics.load(this.#interrupt, 0) === 0) {
        extended = true;
        timer = setTimeout(check, graceMs);
        return;
      }
      stop();
    };
    let timer = setTimeout(check, graceMs);
    return () => clearTimeout(timer);
  }

  /** The one way a worker ends; the first cause is kept, and the owner hears of it once. */
  #die(reason: KillReason, detail: string, notify = true): void {
    if (this.#death) return;
    this.#death = { reason, detail };
    // Ends Python that is still running (terminate alone leaves a busy thread spinning).
    Atomics.store(this.#interrupt, 0, KILL_SIGNAL);
    this.#worker.terminate();
    // The lifeline closes by itself once the worker's thread has ended (`exited`); here when
    // the worker never held it.
    if (!this.#lifelineSent) this.#lifeline.close();
    else {
      this.#exitTimer = setTimeout(() => {
        stuck.add(this);
        this.#exit();
      }, EXIT_WAIT_MS);
      Deno.unrefTimer(this.#exitTimer);
    }
    const error = new Error(detail);
    this.#tools?.end();
    for (const { settle } of this.#pending.values()) settle(undefined, error);
    this.#pending.clear();
    if (notify) this.onDeath?.(reason, detail);
  }
}
