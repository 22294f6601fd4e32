/**
 * The host⇄worker messages. Each request kind has its reply type; the worker answers every
 * request with one envelope (`ok` with the reply, or the error's message), and the host checks
 * the reply against the schema of the kind it asked for, since the worker runs untrusted code.
 * The worker imports only types from here: it can read nothing outside `src/worker/`.
 */
import { z } from "zod";
import type { Limits } from "../policy/schema.ts";
import type { ToolSpec, UpstreamToolSpec } from "../worker/tool_channel.ts";

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
  /** Python's HTTP clients sending through the host, installed by the lockdown with network. */
  http: string;
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

/**
 * Make Pyodide's module and instantiate its wasm now, then wait for the `boot` request (a
 * restore), so that neither is on the restore's path. `snapshot` is the boot snapshot.
 */
export interface PrepareRequest extends PyodideFiles {
  snapshot: Uint8Array;
}

/** Boot a session's interpreter (from the memory snapshot when given one). */
export interface BootRequest extends PyodideFiles {
  python: PythonSources;
  /** A memory snapshot to boot from; absent for a cold boot. */
  snapshot?: Uint8Array;
  /** Linear memory the interpreter may grow to. */
  memoryBytes: number;
  /** Pyodide's interrupt buffer, shared so the host can raise KeyboardInterrupt. */
  interrupt: SharedArrayBuffer;
  /**
   * Counters the worker keeps and the host reads at any time: [0] linear memory in 64 KiB pages,
   * [1] bytes the session's files hold, in KiB, [2] the id of the last request it answered.
   */
  stats: SharedArrayBuffer;
  /** The policy's `limits.filesBytes`: all the session's files together, wherever they are. */
  filesBytes: number;
  caps: OutputCaps;
  /**
   * The hosts of `network.allow`; any: Python's HTTP clients send through the host, which checks
   * each request (the worker has no network); none: no `moat` module.
   */
  network: string[];
  /** Policy mounts, read by the host and copied in at boot. */
  mounts: MountEntry[];
  /** A checkpoint to restore instead of starting a fresh session (its files, its JS state). */
  checkpoint?: Uint8Array<ArrayBuffer>;
  /** The checkpoint's memory: deltas written over `deltaBase` in order (its chain). */
  links?: Uint8Array<ArrayBuffer>[];
  /** The image checkpoints are deltas against, in Pyodide's snapshot layout; `snapshot` if absent. */
  deltaBase?: Uint8Array;
}

/** Take a checkpoint of the idle interpreter: its memory as a delta. */
export interface CheckpointRequest {
  /** sha256 (hex) of the delta base, written into the checkpoint. */
  baseId: string;
  /**
   * The generation of the worker's last checkpoint when the host stored it (or restored it): the
   * delta is then against that one; absent, or another number, against the base.
   */
  against?: number;
}

/** Run one call. */
export interface ExecRequest {
  code: string;
  /** The call's authorized imports (module names, `pkg.*`); absent for no rule. */
  authorizedImports?: string[];
  /** Post `output` notices while the call runs (a streaming client or MCP host is waiting). */
  stream?: boolean;
  /** The call's host tools: Python functions for this call only (PROTOCOL.md §6). */
  tools?: ToolSpec[];
  /** Code mode's upstream tools, sent when the interpreter has not seen this catalog version. */
  upstream?: { version: number; servers: string[]; tools: UpstreamToolSpec[] };
  /** Where the host answers tool calls (see `worker/tool_channel.ts`); absent: no tools. */
  toolChannel?: SharedArrayBuffer;
  /** `limits.toolCalls`: tool calls this request may make. */
  toolCalls?: number;
  /** `limits.toolCallMs`: how long one tool call may wait for its answer. */
  toolCallMs?: number;
}

/** Write a file into the working directory (path checked by `src/files/path.ts`). */
export interface FilePutRequest {
  path: string;
  bytes: Uint8Array;
  /** The policy's `limits.fileBytes`, `limits.filesBytes`, and the interpreter's memory cap. */
  fileBytes: number;
  filesBytes: number;
  memoryBytes: number;
}

/** Read, or delete, one file of the working directory. */
export interface FilePathRequest {
  path: string;
}

/** List the working directory's files. */
export interface FileListRequest {
  /** Stop after this many files (the listing says it was cut). */
  max: number;
}

/** Install wheels (bytes the host fetched) and explain the ones that failed. */
export interface InstallRequest {
  wheels: WheelBytes[];
  unavailable: Unavailable[];
}

/** Each request kind and what it carries. */
export interface Requests {
  snapshot: SnapshotRequest;
  prepare: PrepareRequest;
  boot: BootRequest;
  exec: ExecRequest;
  install: InstallRequest;
  checkpoint: CheckpointRequest;
  "files.put": FilePutRequest;
  "files.get": FilePathRequest;
  "files.list": FileListRequest;
  "files.delete": FilePathRequest;
}

export type RequestKind = keyof Requests;

const installResult = z.object({ name: z.string(), error: z.string().optional() });
/** Something a checkpoint could not carry over, by name, and why. */
const lostSchema = z.object({ what: z.string(), why: z.string() });
/** How a restore went: what could not be restored, and the packages the image holds. */
const restored = z.object({
  prepareMs: z.number(),
  lost: z.array(lostSchema),
  packages: z.array(z.string()),
  adoptMs: z.number(),
});

/** One file of the working directory. */
const fileInfo = z.object({
  /** Relative to the working directory, `/`-separated. */
  path: z.string(),
  size: z.number().int().nonnegative(),
  /** Modification time, ms since the epoch. */
  modifiedMs: z.number(),
});

/** Why the worker refused a file request: what the client asked for, with its HTTP status. */
const fileRefusal = z.object({
  refused: z.object({
    status: z.union([z.literal(400), z.literal(404), z.literal(409), z.literal(413)]),
    message: z.string(),
  }),
});

/** A file request's reply: the refusal, or `ok`. */
const fileReply = <T extends z.ZodRawShape>(ok: T) => z.union([fileRefusal, z.object(ok)]);

/** The reply to each request kind, checked by the host before it is used. */
export const ReplySchemas = {
  snapshot: z.object({ bytes: z.instanceof(Uint8Array) }),
  prepare: z.object({ prepareMs: z.number() }),
  boot: z.object({ bootMs: z.number(), memoryBytes: z.number(), restored: restored.optional() }),
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
  checkpoint: z.object({
    /** The checkpoint's description and files; opaque to the host (`checkpoint/format.ts`). */
    bytes: z.instanceof(Uint8Array),
    /** The memory chunks that changed since `against` (or the base, when `full`). */
    delta: z.instanceof(Uint8Array),
    full: z.boolean(),
    /** Names this checkpoint, for the next request's `against`. */
    generation: z.number(),
    lost: z.array(lostSchema),
    /** Size of the interpreter's memory, and how many chunks the delta holds. */
    imageBytes: z.number(),
    chunks: z.number(),
    ms: z.number(),
  }),
  "files.put": fileReply({ file: fileInfo, created: z.boolean() }),
  "files.get": fileReply({ file: fileInfo, bytes: z.instanceof(Uint8Array) }),
  "files.list": fileReply({
    files: z.array(fileInfo),
    totalBytes: z.number().int().nonnegative(),
    truncated: z.boolean(),
  }),
  "files.delete": fileReply({ file: fileInfo }),
} satisfies Record<RequestKind, z.ZodType>;

export type Reply<K extends RequestKind> = z.infer<(typeof ReplySchemas)[K]>;
export type InstallResult = z.infer<typeof installResult>;
export type Restored = z.infer<typeof restored>;
export type ExecReply = Reply<"exec">;
export type FileInfo = z.infer<typeof fileInfo>;
export type FileRefusal = z.infer<typeof fileRefusal>["refused"];
/** The request kinds of the files API. */
export type FileKind = "files.put" | "files.get" | "files.list" | "files.delete";

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

/**
 * Worker → host, no reply: output the running call printed, in order, posted while it runs
 * (batched) when its request asked to `stream`. Only the kept part (within the caps) is sent.
 */
export const OutputNoticeSchema = z.object({
  notice: z.literal("output"),
  chunks: z.array(z.tuple([z.enum(["stdout", "stderr"]), z.string()])),
});

/** Worker → host: Python called a host tool and waits on the tool channel for the answer. */
export const ToolCallNoticeSchema = z.object({
  notice: z.literal("tool_call"),
  name: z.string().max(256),
  /** The arguments as JSON text (checked by the host). */
  arguments: z.string(),
});

/**
 * Worker → host: Python sent an HTTP request (the worker has no network) and waits on the tool
 * channel for the response. `request` is JSON text: `{url, method, headers, body (base64),
 * timeout}`, checked by the host.
 */
export const HttpNoticeSchema = z.object({
  notice: z.literal("http"),
  request: z.string(),
});

export const WorkerNoticeSchema = z.discriminatedUnion("notice", [
  OutputNoticeSchema,
  ToolCallNoticeSchema,
  HttpNoticeSchema,
]);

export type WorkerNotice = z.infer<typeof WorkerNoticeSchema>;
export type OutputNotice = z.infer<typeof OutputNoticeSchema>;
export type ToolCallNotice = z.infer<typeof ToolCallNoticeSchema>;
export type HttpNotice = z.infer<typeof HttpNoticeSchema>;
