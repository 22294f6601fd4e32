/** One session as the manager keeps it, and what the API says of it. */
import type { ToolSpec } from "../worker/tool_channel.ts";
import type { ToolCallEvent } from "../sandbox/tool_calls.ts";
import type { Interpreter, KillReason } from "../sandbox/interpreter.ts";
import type { Link } from "../store/store.ts";
import { Held } from "./held.ts";
import { SerialQueue } from "./queue.ts";

/** `persistent` keeps state between calls; `ephemeral` gives every call a clean interpreter. */
export type SessionMode = "persistent" | "ephemeral";

/** The id of the session served at `/` (to the operator; each tenant has its own). */
export const DEFAULT_SESSION = "default";

/** The id of the default session of `tenant` (none: the operator's). */
export function defaultSessionOf(tenant?: string): string {
  return tenant ? `${DEFAULT_SESSION}.${tenant}` : DEFAULT_SESSION;
}

/** Whether `id` is a default session (the operator's or a tenant's): it never expires. */
export function isDefaultSession(id: string): boolean {
  return id === DEFAULT_SESSION || /^default\.[a-z0-9][a-z0-9_-]*$/.test(id);
}

/** The tenant a default session id belongs to (`default.<tenant>`); none for the operator's. */
export function defaultSessionTenant(id: string): string | undefined {
  return id.startsWith(`${DEFAULT_SESSION}.`) ? id.slice(DEFAULT_SESSION.length + 1) : undefined;
}

/** What `GET /v1/sessions/{id}` reports. */
export interface SessionInfo {
  id: string;
  mode: SessionMode;
  /** `live`: an interpreter in memory; `hibernated`: only its checkpoint, restored on use. */
  state: "live" | "hibernated";
  /** The instance (`MOAT_INSTANCE_ID`) that answered. */
  instance: string;
  /** ISO 8601 times. */
  created: string;
  lastUsed: string;
  /** When the session is removed if it stays unused; null for the default session. */
  expires: string | null;
  calls: number;
  /** A call is running now. */
  busy: boolean;
  /** Calls waiting behind the running one. */
  queued: number;
  /** Linear memory of the session's interpreter (what the policy's memoryMb caps). */
  memoryBytes: number;
  /** Packages loaded into the session's interpreter. */
  packages: string[];
  /** The session's authorized imports (calls may override them); null when none are enforced. */
  authorizedImports: string[] | null;
  /** The tenant that owns it (`MOAT_TENANTS`); absent for the operator's. */
  tenant?: string;
}

/** Options a session is created with, validated at the HTTP edge. */
export interface SessionOptions {
  /** Modules (and `pkg.*` patterns) the code may import beyond smolagents' standard ones. */
  authorizedImports?: string[];
  /** The tenant creating it; absent: the operator. */
  owner?: string;
}

/** One call as the manager receives it, validated at the HTTP edge. */
export interface CallRequest {
  code: string;
  packages?: string[];
  timeoutMs?: number;
  /** Overrides the session's authorized imports for this call; `["*"]` enforces none. */
  authorizedImports?: string[];
  /** `sync`: answer only once this call's checkpoint is stored. */
  checkpoint?: "sync";
  /**
   * Called with output as the code prints it, while the call runs, batched (a streaming HTTP
   * answer sends it as events, the MCP server as logging notifications); within the caps.
   */
  onOutput?: (stream: "stdout" | "stderr", text: string) => void;
  /** The call's host tools (PROTOCOL.md §6): functions in the session's globals for this call. */
  tools?: ToolSpec[];
  /** Sends a call of one of `tools` to the client (a streamed call's `tool_call` event). */
  onToolCall?: (call: ToolCallEvent) => void;
  /** Aborted when the client answering tool calls went away: a waiting tool call ends then. */
  signal?: AbortSignal;
}

/** The session's one interpreter: a boot under way, then the interpreter once it is there. */
export interface Slot {
  ready: Promise<Interpreter>;
  interpreter?: Interpreter;
}

/** What the store knows of a session, as far as this instance has seen. */
export interface Durability {
  /** A checkpoint of the session is in the store. */
  stored: boolean;
  /** The sequence number of the checkpoint the local interpreter matches (0: none yet). */
  seq: number;
  /** The chain of memory links the stored checkpoint names, when it has one. */
  chain?: Link[];
  /**
   * The interpreter whose checkpoint `generation` is the stored one (it took or restored it):
   * its next checkpoint is a delta against that. Cleared when a write fails. Held weakly: a
   * hibernated session keeps nothing of its stopped interpreter.
   */
  tip?: { interpreter: WeakRef<Interpreter>; generation: number };
  /** The interpreter changed since its last checkpoint. */
  dirty: boolean;
  /** This instance holds the session's lease. */
  leased: boolean;
  /** Why the last checkpoint failed; told in the next answer, then cleared. */
  failure?: string;
  /** Restore facts for the next answer (time and anything that could not be restored). */
  restored?: { ms: number; lost: { what: string; why: string }[] };
  /** No coalesced checkpoint starts before this (`performance.now()`): the cost budget. */
  notBefore?: number;
  /**
   * What the last stored checkpoint cost in ms, for the budget: its `ms` less the one-time
   * storing of the base (the first checkpoint after a start or a store's loss pays for that).
   */
  cost?: number;
  /** Coalescing timers: quiet for `checkpointDelayMs`, at most `checkpointMaxMs` apart. */
  quietTimer?: ReturnType<typeof setTimeout>;
  dirtySince?: number;
}

export class Session {
  created = Date.now();
  lastUsed = Date.now();
  calls = 0;
  memoryBytes = 0;
  /** The interpreter, booting or booted; none until needed, or after it was dropped. */
  slot?: Slot;
  /** Why the interpreter was lost while no call ran; the next call is told instead of run. */
  lost?: { reason: KillReason; detail: string };
  /** Calls, resets and checkpoints run one at a time, in arrival order. */
  readonly queue = new SerialQueue();
  /** What the session holds outside its interpreter (unread answers, queued calls, checkpoints). */
  readonly held = new Held();
  readonly packages = new Set<string>();
  readonly durable: Durability = { stored: false, seq: 0, dirty: false, leased: false };
  constructor(
    readonly id: string,
    readonly mode: SessionMode,
    /** Enforced in every call that does not send its own; kept in the session's checkpoints. */
    public authorizedImports?: string[],
    /** The tenant that owns it, kept in its sealed checkpoints; absent: the operator's. */
    public owner?: string,
  ) {}

  /** The interpreter, once booted. */
  get interpreter(): Interpreter | undefined {
    return this.slot?.interpreter;
  }

  /** Hibernated: no interpreter here, a checkpoint in the store. */
  get hibernated(): boolean {
    return !this.slot && this.durable.stored && this.mode === "persistent";
  }
}

/** What the API says of a session; `ttlMs` is the policy's idle TTL. */
export function infoOf(s: Session, instance: string, ttlMs: number): SessionInfo {
  return {
    id: s.id,
    mode: s.mode,
    state: s.hibernated ? "hibernated" : "live",
    instance,
    created: new Date(s.created).toISOString(),
    lastUsed: new Date(s.lastUsed).toISOString(),
    expires: isDefaultSession(s.id) ? null : new Date(s.lastUsed + ttlMs).toISOString(),
    calls: s.calls,
    busy: s.queue.running,
    queued: s.queue.waiting,
    memoryBytes: s.interpreter?.memoryBytes ?? s.memoryBytes,
    packages: [...s.packages],
    authorizedImports: s.authorizedImports ?? null,
    ...(s.owner ? { tenant: s.owner } : {}),
  };
}
