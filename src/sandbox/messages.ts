/**
 * The host⇄worker messages. Each request kind has its reply type; the worker answers every
 * request with one envelope (`ok` with the reply, or the error's message), and the host checks
 * the reply against the schema of the kind it asked for, since the worker runs untrusted code.
 * The worker imports only types from here: it can read nothing outside `src/worker/`.
 */
import { z } from "zod";
import type { Limits } from "../policy/schema.ts";

/** Per-call output caps the worker applies while it captures. */
export type OutputCaps = Pick<Limits, "stdoutBytes" | "stderrBytes" | "resultBytes">;

/** A file (or, without `bytes`, a directory) copied read-only into the session's file system. */
export interface MountEntry {
  /** Absolute path inside the sandbox. */
  path: string;
  bytes?: Uint8Array;
}

/** One wheel as the host sends it. */
export interface WheelBytes {
  /** Canonical distribution name, the key the session's loaded set uses. */
  name: string;
  fileName: string;
  /** `site` for packages, `dynlib` for shared libraries such as libopenblas. */
  installDir: "site" | "dynlib";
  /** Top-level modules it provides, so an earlier failure note for them is dropped. */
  imports: string[];
  bytes: Uint8Array;
}

/** Import names that must fail with a reason instead of a bare ModuleNotFoundError. */
export interface Unavailable {
  names: string[];
  reason: string;
}

/** The Python sources a worker runs, read once by the host (`src/worker/python/`). */
export interface PythonSources {
  /** REPL semantics, results, tracebacks. */
  runner: string;
  /** Takes the bridge to JavaScript away; run before any user code. */
  lockdown: string;
  /** The finder that explains packages that could not be had. */
  unavailable: string;
  /** Authorized imports (smolagents' rule), installed by the lockdown. */
  imports: string;
}

/** How Pyodide is found: its directory and the wasm module the host compiled once. */
interface PyodideFiles {
  /** Absolute path of the Pyodide package directory. */
  indexPath: string;
  /** Pyodide's wasm module, compiled once by the host (a worker only instantiates it). */
  wasmModule?: WebAssembly.Module;
  /** A port the worker holds until it ends; its closing tells the host the worker is gone. */
  lifeline?: MessagePort;
}

/** Boot cold in a throw-away worker and answer with the memory snapshot. */
export type SnapshotRequest = PyodideFiles;

/** Boot a session's interpreter (from the memory snapshot when given one). */
export interface BootRequest extends PyodideFiles {
  python: PythonSources;
  /** A memory snapshot to boot from; absent for a cold boot. */
  snapshot?: Uint8Array;
  /** Linear memory the interpreter may grow to. */
  memoryBytes: number;
  /** Pyodide's interrupt buffer, shared so the host can raise KeyboardInterrupt. */
  interrupt: SharedArrayBuffer;
  /** Counters the worker keeps and the host reads at any time: [0] linear memory in 64 KiB pages. */
  stats: SharedArrayBuffer;
  caps: OutputCaps;
  /** Hosts (`name` or `name:port`) Python may fetch from; empty for no network. */
  network: string[];
  /** Policy mounts, read by the host and copied in at boot. */
  mounts: MountEntry[];
}

/** Run one call. */
export interface ExecRequest {
  code: string;
  /** The call's authorized imports (module names, `pkg.*`); absent for no rule. */
  authorizedImports?: string[];
}

/** Install wheels (bytes the host fetched) and explain the ones that failed. */
export interface InstallRequest {
  wheels: WheelBytes[];
  unavailable: Unavailable[];
}

/** Each request kind and what it carries. */
export interface Requests {
  snapshot: SnapshotRequest;
  boot: BootRequest;
  exec: ExecRequest;
  install: InstallRequest;
}

export type RequestKind = keyof Requests;

const installResult = z.object({ name: z.string(), error: z.string().optional() });

/** The reply to each request kind, checked by the host before it is used. */
export const ReplySchemas = {
  snapshot: z.object({ bytes: z.instanceof(Uint8Array) }),
  boot: z.object({ bootMs: z.number(), memoryBytes: z.number() }),
  exec: z.object({
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
  install: z.object({ results: z.array(installResult), memoryBytes: z.number() }),
} satisfies Record<RequestKind, z.ZodType>;

export type Reply<K extends RequestKind> = z.infer<(typeof ReplySchemas)[K]>;
export type InstallResult = z.infer<typeof installResult>;
export type ExecReply = Reply<"exec">;

/** Host → worker: a request with its correlation id, or the notice that time is up. */
export type HostMessage =
  | { [K in RequestKind]: { kind: K; id: number } & Requests[K] }[RequestKind]
  /** The running call's time is up (for a call awaiting, which no flag reaches); no reply. */
  | { kind: "interrupt" };

/** Worker → host: the answer to request `id`. */
export const WorkerEnvelopeSchema = z.discriminatedUnion("ok", [
  z.object({ id: z.number().int(), ok: z.literal(true), reply: z.unknown() }),
  z.object({ id: z.number().int(), ok: z.literal(false), message: z.string() }),
]);

export type WorkerEnvelope = z.infer<typeof WorkerEnvelopeSchema>;
