import { z } from "zod";
import type { Unavailable, WheelBytes } from "../packages/install.ts";

/** Per-call output caps the worker applies while it captures. */
export interface OutputCaps {
  stdoutBytes: number;
  stderrBytes: number;
  resultBytes: number;
}

/** A file (or, without `bytes`, a directory) copied read-only into the session's file system. */
export interface MountEntry {
  /** Absolute path inside the sandbox. */
  path: string;
  bytes?: Uint8Array;
}

/** Host → worker: boot an interpreter (from a snapshot when given one). */
export interface BootMessage {
  type: "boot";
  id: number;
  /** Absolute path of the Pyodide package directory. */
  indexPath: string;
  /** Source of `python/runner.py`. */
  runner: string;
  /** Pyodide's wasm module, compiled once by the host (a worker only instantiates it). */
  wasmModule?: WebAssembly.Module;
  /** A memory snapshot to boot from; absent for a cold boot. */
  snapshot?: Uint8Array;
  /** Boot cold, then answer with a snapshot instead of becoming a session interpreter. */
  makeSnapshot: boolean;
  /** Linear memory the interpreter may grow to. */
  memoryBytes: number;
  /** Pyodide's interrupt buffer, shared so the host can raise KeyboardInterrupt. */
  interrupt: SharedArrayBuffer;
  /** Counters the worker keeps and the host reads at any time: [0] linear memory in 64 KiB pages. */
  stats: SharedArrayBuffer;
  /** A port the worker holds until it ends; its closing tells the host the worker is gone. */
  lifeline?: MessagePort;
  caps: OutputCaps;
  /** Source of `python/lockdown.py`, run before any user code. */
  lockdown: string;
  /** Source of `python/imports.py` (authorized imports), installed by the lockdown. */
  imports: string;
  /** Hosts (`name` or `name:port`) Python may fetch from; empty for no network. */
  network: string[];
  /** Policy mounts, read by the host and copied in at boot. */
  mounts: MountEntry[];
}

/** Host → worker: run one call. */
export interface ExecMessage {
  type: "exec";
  id: number;
  code: string;
  /** The call's authorized imports (module names, `pkg.*`); absent for no rule. */
  authorizedImports?: string[];
}

/** Host → worker: install wheels (bytes the host fetched) and explain the ones that failed. */
export interface InstallMessage {
  type: "install";
  id: number;
  wheels: WheelBytes[];
  unavailable: Unavailable[];
}

/** Host → worker: the running call's time is up (for a call awaiting, which no flag reaches). */
export interface InterruptMessage {
  type: "interrupt";
  id: number;
}

export type HostMessage = BootMessage | ExecMessage | InstallMessage | InterruptMessage;

const id = z.number().int();

/**
 * Worker → host messages. The worker runs untrusted code, so every message is validated and
 * matched against a request the host made; anything else is ignored.
 */
export const WorkerMessageSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("ready"), id, bootMs: z.number(), memoryBytes: z.number() }),
  z.object({ type: z.literal("snapshot"), id, bytes: z.instanceof(Uint8Array) }),
  z.object({ type: z.literal("boot-failed"), id, message: z.string() }),
  z.object({
    type: z.literal("installed"),
    id,
    results: z.array(z.object({ name: z.string(), error: z.string().optional() })),
    memoryBytes: z.number(),
  }),
  z.object({
    type: z.literal("result"),
    id,
    /** JSON text of the result, kept as text so big integers survive. */
    result: z.string(),
    /** JSON text of the Python error object, or "null". */
    error: z.string(),
    stdout: z.string(),
    stderr: z.string(),
    cut: z.object({ stdout: z.boolean(), stderr: z.boolean(), result: z.boolean() }),
    memoryBytes: z.number(),
    /** Set when the interpreter itself broke (not a Python exception): it must be replaced. */
    fatal: z.string().optional(),
    /** What the lockdown refused during this call (blocked imports, gc walks…), for the audit. */
    denied: z.array(z.string()).optional(),
  }),
]);

export type WorkerMessage = z.infer<typeof WorkerMessageSchema>;
export type ResultMessage = Extract<WorkerMessage, { type: "result" }>;
