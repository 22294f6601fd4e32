import { SessionNotFound, TooManyRequests, Unavailable } from "../errors.ts";
import type { Policy } from "../policy/schema.ts";
import { emptyReport, loadPackages } from "../packages/call.ts";
import type { PackageLoader } from "../packages/loader.ts";
import type { ExecEnd, Sandbox } from "../sandbox/host.ts";
import type { Pool } from "../sandbox/pool.ts";
import { type Answer, buildAnswer } from "./answer.ts";

/** `persistent` keeps state between calls; `ephemeral` gives every call a clean interpreter. */
export type SessionMode = "persistent" | "ephemeral";

/** The id of the session served at `/`. */
export const DEFAULT_SESSION = "default";

/** What `GET /v1/sessions/{id}` reports. */
export interface SessionInfo {
  id: string;
  mode: SessionMode;
  created: string;
  lastUsed: string;
  calls: number;
  memoryBytes: number;
  packages: string[];
}

/** One call as the manager receives it, validated at the HTTP edge. */
export interface CallRequest {
  code: string;
  packages?: string[];
  timeoutMs?: number;
}

class Session {
  readonly created = Date.now();
  lastUsed = Date.now();
  calls = 0;
  waiting = 0;
  memoryBytes = 0;
  box?: Promise<Sandbox>;
  tail: Promise<unknown> = Promise.resolve();
  readonly packages = new Set<string>();
  constructor(readonly id: string, readonly mode: SessionMode) {}
}

/** Creates, finds, queues calls for, expires and shuts down sessions. */
export class SessionManager {
  readonly #sessions = new Map<string, Session>();
  readonly #sweeper: ReturnType<typeof setInterval>;
  #closing = false;

  constructor(
    private readonly policy: Policy,
    private readonly pool: Pool,
    private readonly onCall: (session: string, answer: Answer, code: string) => void = () => {},
    /** Resolves and fetches the packages calls ask for; calls load nothing without it. */
    private readonly loader?: PackageLoader,
  ) {
    this.#sessions.set(DEFAULT_SESSION, new Session(DEFAULT_SESSION, "persistent"));
    const every = Math.min(30_000, policy.limits.idleTtlSeconds * 250);
    this.#sweeper = setInterval(() => this.sweep(), every);
  }

  /** Creates a session; 429 when the policy's session cap is reached. */
  create(mode: SessionMode): SessionInfo {
    this.#assertOpen();
    if (this.#sessions.size >= this.policy.limits.sessions) {
      throw new TooManyRequests(
        `The server holds its maximum of ${this.policy.limits.sessions} sessions; ` +
          `delete one (DELETE /v1/sessions/{id}) or wait for idle ones to expire`,
      );
    }
    const session = new Session(crypto.randomUUID(), mode);
    this.#sessions.set(session.id, session);
    if (mode === "persistent") session.box = this.#boot();
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
    const session = this.#find(id);
    if (session.waiting >= this.policy.limits.queuedCalls) {
      throw new TooManyRequests(
        `Session '${id}' already has ${session.waiting} calls waiting; ` +
          `send the next call when one finishes`,
      );
    }
    session.waiting++;
    session.lastUsed = Date.now();
    const run = session.tail.then(() => this.#run(session, request));
    session.tail = run.catch(() => {}).finally(() => session.waiting--);
    return run;
  }

  /** Gives the session a clean interpreter, after the calls already queued. */
  reset(id: string): Promise<SessionInfo> {
    const session = this.#find(id);
    const done = session.tail.then(() => {
      this.#discard(session);
      session.packages.clear();
      if (session.mode === "persistent") session.box = this.#boot();
      return this.#info(session);
    });
    session.tail = done.catch(() => {});
    return done;
  }

  /** Deletes a session and terminates its interpreter, even mid-call. */
  delete(id: string): void {
    const session = this.#find(id);
    this.#sessions.delete(id);
    this.#discard(session);
    if (id === DEFAULT_SESSION) {
      this.#sessions.set(DEFAULT_SESSION, new Session(DEFAULT_SESSION, "persistent"));
    }
  }

  /** Removes sessions unused for longer than the policy's idle TTL. */
  sweep(now = Date.now()): void {
    const ttl = this.policy.limits.idleTtlSeconds * 1000;
    for (const session of this.#sessions.values()) {
      if (session.id === DEFAULT_SESSION || session.waiting > 0) continue;
      if (now - session.lastUsed > ttl) {
        this.#sessions.delete(session.id);
        this.#discard(session);
      }
    }
  }

  /** Refuses new work, lets running calls finish within `graceMs`, then stops every worker. */
  async shutdown(graceMs: number): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    const running = [...this.#sessions.values()].map((s) => s.tail);
    await Promise.race([
      Promise.allSettled(running),
      new Promise((r) => setTimeout(r, graceMs)),
    ]);
    for (const session of this.#sessions.values()) this.#discard(session);
    this.pool.close();
  }

  get closing(): boolean {
    return this.#closing;
  }

  async #run(session: Session, request: CallRequest): Promise<Answer> {
    const { limits } = this.policy;
    const timeoutMs = Math.min(request.timeoutMs ?? limits.timeoutMs, limits.maxTimeoutMs);
    const box = await (session.box ??= this.#boot());
    const started = performance.now();
    // Packages load first, inside the call's time limit; the code gets what is left.
    const packages = this.loader
      ? await loadPackages(this.loader, box, request.packages ?? [], timeoutMs)
      : emptyReport();
    for (const name of box.packages) session.packages.add(name);
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const end: ExecEnd = box.alive
      ? await box.exec(request.code, left, limits.graceMs)
      : { kind: "killed", reason: "timeout", detail: "loading packages used up the time limit" };
    const answer = buildAnswer(end, {
      timeoutMs,
      durationMs: performance.now() - started,
      memoryBytes: box.memoryBytes,
      packages,
    });
    session.calls++;
    session.memoryBytes = box.memoryBytes;
    session.lastUsed = Date.now();
    if (session.mode === "ephemeral" || !box.alive) {
      box.terminate();
      session.box = undefined;
      session.packages.clear();
      // A persistent session gets its replacement at once, so the next call does not wait.
      if (session.mode === "persistent" && this.#sessions.has(session.id)) {
        session.box = this.#boot();
      }
    }
    this.onCall(session.id, answer, request.code);
    return answer;
  }

  #boot(): Promise<Sandbox> {
    const box = this.pool.take().catch((err) => {
      throw new Unavailable(`No Python interpreter could be started: ${err.message}`);
    });
    box.catch(() => {}); // reported to the call that awaits it, never unhandled
    return box;
  }

  #discard(session: Session): void {
    const box = session.box;
    session.box = undefined;
    box?.then((b) => b.terminate(), () => {});
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
    return {
      id: s.id,
      mode: s.mode,
      created: new Date(s.created).toISOString(),
      lastUsed: new Date(s.lastUsed).toISOString(),
      calls: s.calls,
      memoryBytes: s.memoryBytes,
      packages: [...s.packages],
    };
  }
}
