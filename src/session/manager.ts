import { SessionNotFound, TooManyRequests, Unavailable } from "../errors.ts";
import type { Policy } from "../policy/schema.ts";
import type { PackageLoader } from "../packages/loader.ts";
import type { ExecEnd, Interpreter, KillReason } from "../sandbox/interpreter.ts";
import type { Pool } from "../sandbox/pool.ts";
import { type Answer, serialize } from "./answer.ts";
import { classify } from "./outcome.ts";
import { emptyReport, loadPackages } from "./packages.ts";
import { assertPackageCount } from "../packages/limit.ts";
import { SerialQueue } from "./queue.ts";
import { MemoryWatchdog } from "./watchdog.ts";

/** `persistent` keeps state between calls; `ephemeral` gives every call a clean interpreter. */
export type SessionMode = "persistent" | "ephemeral";

/** The id of the session served at `/`. */
export const DEFAULT_SESSION = "default";

/** What `GET /v1/sessions/{id}` reports. */
export interface SessionInfo {
  id: string;
  mode: SessionMode;
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
  /** `MOAT_INSTANCE_ID` of the instance that holds the session (PROTOCOL.md §5). */
  instance: string;
}

/** One call as the manager receives it, validated at the HTTP edge. */
export interface CallRequest {
  code: string;
  packages?: string[];
  timeoutMs?: number;
  /**
   * Called with output as the code prints it, while the call runs (the MCP server sends it as
   * logging notifications). Not wired yet: the worker reports output only with the answer.
   */
  onOutput?: (stream: "stdout" | "stderr", text: string) => void;
}

/** The session's one interpreter: a boot under way, then the interpreter once it is there. */
interface Slot {
  ready: Promise<Interpreter>;
  interpreter?: Interpreter;
}

class Session {
  readonly created = Date.now();
  lastUsed = Date.now();
  calls = 0;
  memoryBytes = 0;
  /** The interpreter, booting or booted; none until needed, or after it was dropped. */
  slot?: Slot;
  /** Why the interpreter was lost while no call ran; the next call is told instead of run. */
  lost?: { reason: KillReason; detail: string };
  /** Calls (and resets) run one at a time, in arrival order. */
  readonly queue = new SerialQueue();
  readonly packages = new Set<string>();
  constructor(readonly id: string, readonly mode: SessionMode) {}

  /** The interpreter, once booted. */
  get interpreter(): Interpreter | undefined {
    return this.slot?.interpreter;
  }
}

/** What the session manager works with. */
export interface SessionManagerOptions {
  policy: Policy;
  pool: Pool;
  /** Called after every call, for the audit log. */
  onCall?: (session: string, answer: Answer, code: string) => void;
  /** Resolves and fetches the packages calls ask for; calls load nothing without it. */
  loader?: PackageLoader;
  log?: (line: string) => void;
  /** `MOAT_INSTANCE_ID`, shown in session details. @default {"local"} */
  instance?: string;
}

/** Creates, finds, queues calls for, expires and shuts down sessions. */
export class SessionManager {
  readonly #sessions = new Map<string, Session>();
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly #watchdog: MemoryWatchdog;
  readonly #policy: Policy;
  readonly #pool: Pool;
  readonly #onCall: NonNullable<SessionManagerOptions["onCall"]>;
  readonly #loader?: PackageLoader;
  readonly #instance: string;
  #closing = false;

  constructor(options: SessionManagerOptions) {
    const { policy } = options;
    this.#policy = policy;
    this.#pool = options.pool;
    this.#onCall = options.onCall ?? (() => {});
    this.#loader = options.loader;
    this.#instance = options.instance ?? "local";
    this.#sessions.set(DEFAULT_SESSION, new Session(DEFAULT_SESSION, "persistent"));
    const every = Math.min(30_000, policy.limits.idleTtlSeconds * 250);
    this.#sweeper = setInterval(() => this.sweep(), every);
    this.#watchdog = new MemoryWatchdog(
      policy.limits.serverMemoryMb * 1024 * 1024,
      () => [...this.#sessions.values()].flatMap((s) => s.interpreter ? [s.interpreter] : []),
      options.log,
    );
  }

  /** Creates a session; 429 when the policy's session cap is reached. */
  create(mode: SessionMode): SessionInfo {
    this.#assertOpen();
    const { sessions } = this.#policy.limits;
    if (this.#sessions.size >= sessions) {
      throw new TooManyRequests(
        `The server holds its maximum of ${sessions} sessions; ` +
          `delete one (DELETE /v1/sessions/{id}) or wait for idle ones to expire`,
      );
    }
    const session = new Session(crypto.randomUUID(), mode);
    this.#sessions.set(session.id, session);
    if (mode === "persistent") this.#boot(session);
    return this.#info(session);
  }

  /** Details of one session; 404 when unknown. */
  get(id: string): SessionInfo {
    return this.#info(this.#find(id));
  }

  list(): SessionInfo[] {
    return [...this.#sessions.values()].map((s) => this.#info(s));
  }

  /** Runs a call after the calls already queued on that session. */
  exec(id: string, request: CallRequest): Promise<Answer> {
    this.#assertOpen();
    assertPackageCount(request.packages, this.#policy.packages.maxPerCall);
    const session = this.#find(id);
    if (session.queue.size > this.#policy.limits.queuedCalls) {
      throw new TooManyRequests(
        `Session '${id}' already has ${session.queue.size - 1} calls waiting behind the running ` +
          `one (the policy's limits.queuedCalls); send the next call when one finishes`,
      );
    }
    session.lastUsed = Date.now();
    return session.queue.run(() => this.#run(session, request));
  }

  /** Gives the session a clean interpreter, after the calls already queued. */
  reset(id: string): Promise<SessionInfo> {
    const session = this.#find(id);
    return session.queue.run(() => {
      this.#discard(session, "the session was reset");
      session.lost = undefined;
      if (session.mode === "persistent") this.#boot(session);
      return this.#info(session);
    });
  }

  /** Deletes a session and terminates its interpreter, even mid-call. */
  delete(id: string): void {
    const session = this.#find(id);
    this.#sessions.delete(id);
    this.#discard(session, "the session was deleted");
    if (id === DEFAULT_SESSION) {
      this.#sessions.set(DEFAULT_SESSION, new Session(DEFAULT_SESSION, "persistent"));
    }
  }

  /** Removes sessions unused for longer than the policy's idle TTL. */
  sweep(now = Date.now()): void {
    const ttl = this.#policy.limits.idleTtlSeconds * 1000;
    for (const session of this.#sessions.values()) {
      if (session.id === DEFAULT_SESSION || session.queue.size > 0) continue;
      if (now - session.lastUsed > ttl) {
        this.#sessions.delete(session.id);
        this.#discard(session, "the session expired");
      }
    }
  }

  /** Refuses new work, lets running calls finish within `graceMs`, then stops every worker. */
  async shutdown(graceMs: number): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    this.#watchdog.stop();
    const running = [...this.#sessions.values()].map((s) => s.queue.idle());
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled(running),
      new Promise((r) => timer = setTimeout(r, graceMs)),
    ]);
    clearTimeout(timer);
    for (const session of this.#sessions.values()) {
      this.#discard(session, "the server is shutting down");
    }
    this.#pool.close();
  }

  get closing(): boolean {
    return this.#closing;
  }

  async #run(session: Session, request: CallRequest): Promise<Answer> {
    const { limits } = this.#policy;
    const timeoutMs = Math.min(request.timeoutMs ?? limits.timeoutMs, limits.maxTimeoutMs);
    if (session.lost) return this.#tellLost(session, timeoutMs, request.code);
    const interpreter = await (session.slot ?? this.#boot(session)).ready;
    const started = performance.now();
    let packages = emptyReport();
    // Packages load first, inside the call's time limit; the code gets what is left.
    if (this.#loader) {
      packages = await loadPackages(this.#loader, interpreter, request.packages ?? [], timeoutMs);
    }
    for (const name of interpreter.packages) session.packages.add(name);
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const end: ExecEnd = interpreter.alive
      ? await interpreter.exec(request.code, left, limits.graceMs)
      : { kind: "killed", reason: "timeout", detail: "loading packages used up the time limit" };
    const answer = serialize(classify(end, timeoutMs), {
      durationMs: performance.now() - started,
      memoryBytes: interpreter.memoryBytes,
      packages,
    });
    session.calls++;
    session.memoryBytes = interpreter.memoryBytes;
    session.lastUsed = Date.now();
    if (session.mode === "ephemeral" || !interpreter.alive) this.#replace(session, interpreter);
    this.#onCall(session.id, answer, request.code);
    return answer;
  }

  /** The answer for a call on a session whose interpreter was lost while it was idle. */
  #tellLost(session: Session, timeoutMs: number, code: string): Answer {
    const end: ExecEnd = { kind: "killed", ...session.lost! };
    session.lost = undefined;
    session.calls++;
    session.lastUsed = Date.now();
    const answer = serialize(classify(end, timeoutMs, true), { durationMs: 0, memoryBytes: 0 });
    this.#onCall(session.id, answer, code);
    return answer;
  }

  /** Drops a used or dead interpreter; a persistent session gets its replacement at once. */
  #replace(session: Session, interpreter: Interpreter): void {
    interpreter.terminate();
    session.slot = undefined;
    session.packages.clear();
    if (session.mode === "persistent" && this.#sessions.get(session.id) === session) {
      this.#boot(session);
    }
  }

  /** An interpreter that dies while its session is idle is replaced, and the next call told. */
  #onDeath(session: Session, interpreter: Interpreter, reason: KillReason, detail: string): void {
    if (session.interpreter !== interpreter || this.#sessions.get(session.id) !== session) return;
    if (session.queue.running) return; // the running call reports it
    session.lost = { reason, detail };
    this.#replace(session, interpreter);
  }

  /** Starts the session's interpreter (from the pool) in its slot. */
  #boot(session: Session): Slot {
    const slot: Slot = {
      ready: this.#pool.take().then(
        (interpreter) => {
          if (session.slot === slot) slot.interpreter = interpreter;
          interpreter.onDeath = (reason, detail) =>
            this.#onDeath(session, interpreter, reason, detail);
          return interpreter;
        },
        (err) => {
          if (session.slot === slot) session.slot = undefined; // the next call tries again
          throw new Unavailable(`No Python interpreter could be started: ${err.message}`);
        },
      ),
    };
    slot.ready.catch(() => {}); // reported to the call that awaits it, never unhandled
    session.slot = slot;
    return slot;
  }

  #discard(session: Session, why: string): void {
    const slot = session.slot;
    session.slot = undefined;
    session.packages.clear();
    slot?.ready.then((interpreter) => interpreter.terminate(why), () => {});
  }

  #find(id: string): Session {
    const session = this.#sessions.get(id);
    if (!session) throw new SessionNotFound(id);
    return session;
  }

  #assertOpen(): void {
    if (this.#closing) throw new Unavailable("The server is shutting down");
  }

  #info(s: Session): SessionInfo {
    const ttl = this.#policy.limits.idleTtlSeconds * 1000;
    return {
      id: s.id,
      mode: s.mode,
      created: new Date(s.created).toISOString(),
      lastUsed: new Date(s.lastUsed).toISOString(),
      expires: s.id === DEFAULT_SESSION ? null : new Date(s.lastUsed + ttl).toISOString(),
      calls: s.calls,
      busy: s.queue.running,
      queued: s.queue.waiting,
      memoryBytes: s.interpreter?.memoryBytes ?? s.memoryBytes,
      packages: [...s.packages],
      instance: this.#instance,
    };
  }
}
