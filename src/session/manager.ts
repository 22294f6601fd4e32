import type { NetworkUse, Outbound } from "../outbound/outbound.ts";
import type { Quotas } from "../tenants/quotas.ts";
import { SessionLost, SessionNotFound, TooManyRequests, Unavailable } from "../errors.ts";
import type { PackageLoader } from "../packages/loader.ts";
import type { Limits, Policy } from "../policy/schema.ts";
import type { ExecEnd, Interpreter, KillReason } from "../sandbox/interpreter.ts";
import { stuckBytes } from "../sandbox/interpreter.ts";
import type { Pool } from "../sandbox/pool.ts";
import type {
  Answered,
  CallTools,
  ToolCount,
  ToolOutcome,
  UpstreamCaller,
} from "../sandbox/tool_calls.ts";
import { type Answer, serialize } from "./answer.ts";
import type { Checkpoints, Loaded } from "./checkpoints.ts";
import { answerFields, DurableSessions, SessionLostError } from "./durable.ts";
import { classify } from "./outcome.ts";
import { emptyReport, loadPackages } from "./packages.ts";
import { assertPackageCount } from "../packages/limit.ts";
import {
  type CallRequest,
  DEFAULT_SESSION,
  defaultSessionOf,
  defaultSessionTenant,
  infoOf,
  isDefaultSession,
  Session,
  type SessionInfo,
  type SessionMode,
  type SessionOptions,
  type Slot,
} from "./session.ts";
import type { Held } from "./held.ts";
import { Registry } from "./registry.ts";
import { holderOf, MemoryWatchdog } from "./watchdog.ts";

export {
  type CallRequest,
  DEFAULT_SESSION,
  defaultSessionOf,
  type SessionInfo,
  type SessionMode,
  type SessionOptions,
};

/**
 * What sessions of one policy run with: the server's (the manager's own options), or a tenant's
 * own policy's (`src/scope.ts`).
 */
export interface SessionScope {
  policy: Policy;
  pool: Pool;
  loader?: PackageLoader;
  outbound?: Outbound;
  upstream?: UpstreamCaller;
  restore?: (loaded: Loaded) => Promise<Interpreter>;
}

/** The tenants whose policy is not the server's, and what their sessions run with. */
export interface TenantScopes {
  /** The scope of `tenant`'s sessions; undefined: the server's. */
  of(tenant: string): SessionScope | undefined;
  /** Every tenant scope (for the sweep's pace and shutdown). */
  all(): SessionScope[];
}

/** What the session manager works with. */
export interface SessionManagerOptions {
  /**
   * The server's policy: its server-wide limits hold over all sessions, and it governs every
   * session that is not a tenant's with a policy of its own.
   */
  policy: Policy;
  pool: Pool;
  /** Called after every call, for the audit log. */
  onCall?: (session: string, answer: Answer, code: string, tenant?: string) => void;
  /** Resolves and fetches the packages calls ask for; calls load nothing without it. */
  loader?: PackageLoader;
  log?: (line: string) => void;
  /** This instance's id (`MOAT_INSTANCE_ID`), in session details. @default {"local"} */
  instanceId?: string;
  /** Durable sessions (checkpoints in a store); without it sessions live in memory only. */
  checkpoints?: Checkpoints;
  /** Boots an interpreter from a checkpoint; required with `checkpoints`. */
  restore?: (loaded: Loaded) => Promise<Interpreter>;
  /** Code mode: the policy's upstream MCP servers, whose tools every call may use. */
  upstream?: UpstreamCaller;
  /** Told of every host tool call once it ended (the metrics). */
  onToolCall?: ToolCount;
  /** Sends Python's HTTP requests (the policy's `network.allow`); absent: no host allowed. */
  outbound?: Outbound;
  /** Tenants' quotas (`MOAT_TENANTS`): sessions held and stored, calls per minute. */
  quotas?: Quotas;
  /** Tenants with a policy of their own (`MOAT_TENANTS`): their sessions run under it. */
  tenantScopes?: TenantScopes;
}

/** Creates, finds, queues calls for, checkpoints, expires and shuts down sessions. */
export class SessionManager {
  readonly #sessions = new Registry();
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly #watchdog: MemoryWatchdog;
  readonly #policy: Policy;
  /** The server's scope: every session that is not a tenant's with a policy of its own. */
  readonly #server: SessionScope;
  readonly #tenantScopes?: TenantScopes;
  readonly #onCall: NonNullable<SessionManagerOptions["onCall"]>;
  readonly #durable?: DurableSessions;
  readonly #instance: string;
  readonly #countTool?: ToolCount;
  readonly #quotas?: Quotas;
  #closing = false;

  constructor(options: SessionManagerOptions) {
    const { policy } = options;
    this.#policy = policy;
    this.#server = options;
    this.#tenantScopes = options.tenantScopes;
    this.#onCall = options.onCall ?? (() => {});
    this.#countTool = options.onToolCall;
    this.#quotas = options.quotas;
    if (options.checkpoints && options.restore) {
      this.#durable = new DurableSessions(options.checkpoints, policy.limits, {
        // Into the pool of the policy the session's tenant has now.
        restore: (loaded) => {
          const tenant = loaded.meta.tenant;
          const scope = this.#scopeOf(typeof tenant === "string" ? tenant : undefined);
          return (scope.restore ?? options.restore!)(loaded);
        },
        adopt: (session, interpreter) => this.#adopt(session, interpreter),
        discard: (session, why) => this.#discard(session, why),
        makeRoom: (session) => this.#sessions.makeRoom(policy.limits.sessions, session),
      });
    }
    this.#instance = options.instanceId ?? options.checkpoints?.instanceId ?? "local";
    this.#sessions.durable = this.#durable;
    const paces = [policy, ...options.tenantScopes?.all().map((s) => s.policy) ?? []].map((p) =>
      Math.min(p.limits.idleTtlSeconds, p.limits.hibernateAfterSeconds) * 250
    );
    const every = Math.min(30_000, ...paces);
    this.#sweeper = setInterval(() => this.sweep(), every);
    this.#watchdog = new MemoryWatchdog(
      policy.limits.serverMemoryMb * 1024 * 1024,
      () => [...this.#sessions.values()].map(holderOf),
      options.log,
      undefined,
      stuckBytes,
    );
  }

  /** Learns the sessions the store holds (a restarted server); each restores on first use. */
  async loadStored(): Promise<number> {
    if (!this.#durable) return 0;
    const stored = await this.#durable.stored();
    for (const { id, meta } of stored) this.#sessions.known(id, meta);
    return stored.length;
  }

  /** Creates a session; 429 when the policy's cap of live interpreters is reached. */
  async create(mode: SessionMode, options: SessionOptions = {}): Promise<SessionInfo> {
    this.#assertOpen();
    await this.#sessions.makeRoom(this.#policy.limits.sessions);
    // Checked and counted with no wait in between: concurrent creates cannot overshoot.
    const owner = options.owner;
    if (owner && this.#quotas) {
      const { held, stored } = this.#sessions.ownedBy(owner);
      this.#quotas.checkCreate(owner, held, stored);
    }
    const session = new Session(
      crypto.randomUUID(),
      mode,
      options.authorizedImports,
      options.owner,
    );
    this.#sessions.add(session);
    if (mode === "persistent") this.#boot(session);
    await this.#durable?.created(session);
    return this.#info(session);
  }

  /** Details of one session; 404 when unknown. */
  async get(id: string): Promise<SessionInfo> {
    return this.#info(await this.#sessions.find(id));
  }

  /** Every session here, or only those of `tenant`. */
  list(tenant?: string): SessionInfo[] {
    return [...this.#sessions.values()].filter((s) => !tenant || s.owner === tenant)
      .map((s) => this.#info(s));
  }

  /**
   * 404 unless `tenant` owns session `id` (no tenant: the operator, who reaches every session).
   * Another tenant's session answers exactly as one that does not exist.
   */
  async assertOwner(id: string, tenant?: string): Promise<void> {
    if (!tenant) return;
    if (isDefaultSession(id) && defaultSessionTenant(id) !== tenant) throw new SessionNotFound(id);
    const session = await this.#sessions.find(id);
    if (session.owner !== tenant) {
      // An id that is not here costs a look in the store; another tenant's costs the same, so
      // the time of the 404 does not tell that it exists.
      if (this.#durable) await this.#durable.lookup(crypto.randomUUID()).catch(() => {});
      throw new SessionNotFound(id);
    }
  }

  /** Runs a call after the calls already queued on that session. */
  async exec(id: string, request: CallRequest): Promise<Answer> {
    return await (await this.submit(id, request)).answer;
  }

  /**
   * Queues a call: rejects at once for an unknown session (404), a full queue (429), too many
   * packages (400) or a server shutting down (503), else resolves with the answer to come.
   */
  async submit(id: string, request: CallRequest): Promise<{ answer: Promise<Answer>; held: Held }> {
    const session = await this.#enqueue(id);
    assertPackageCount(request.packages, this.#scope(session).policy.packages.maxPerCall);
    if (session.owner) this.#quotas?.takeCall(session.owner);
    // The code waiting in the queue is the session's to carry (the watchdog counts it).
    const release = session.held.add(request.code.length);
    const answer = session.queue.run(async () => {
      release();
      const answer = await this.#run(session, request);
      answer.held = session.held;
      return answer;
    });
    answer.catch(release);
    return { answer, held: session.held };
  }

  /**
   * Runs `task` with the session's interpreter in the session's queue, so it never meets a
   * running call: it waits behind the calls already queued (the files API). A task that
   * `changes` the interpreter's state gets it checkpointed like a call.
   */
  async withInterpreter<T>(
    id: string,
    task: (interpreter: Interpreter) => Promise<T>,
    changes = false,
    bytes = 0,
  ): Promise<T> {
    const session = await this.#enqueue(id);
    const release = session.held.add(bytes);
    return await session.queue.run(async () => {
      release();
      await this.#runner(session, this.#scope(session).policy.limits.timeoutMs);
      const result = await task(await (session.slot ?? this.#boot(session)).ready);
      if (changes) await this.#durable?.afterCall(session, false);
      return result;
    });
  }

  /** The session, if the server is open and its queue has room (429 otherwise). */
  async #enqueue(id: string): Promise<Session> {
    this.#assertOpen();
    const session = await this.#sessions.find(id);
    if (session.queue.size > this.#scope(session).policy.limits.queuedCalls) {
      throw new TooManyRequests(
        `Session '${id}' already has ${session.queue.size - 1} calls waiting behind the running ` +
          `one (the policy's limits.queuedCalls); send the next call when one finishes`,
      );
    }
    session.lastUsed = Date.now();
    return session;
  }

  /** Durable sessions: this instance runs the session, with its latest state (or SessionLost). */
  async #runner(session: Session, timeoutMs: number): Promise<void> {
    if (!this.#durable || session.mode !== "persistent") return;
    try {
      await this.#durable.ensureRunner(session, performance.now() + timeoutMs);
    } catch (err) {
      if (!(err instanceof SessionLostError)) throw err;
      await this.#remove(session, "its state was lost");
      throw new SessionLost(err.message);
    }
  }

  /** Gives the session a clean interpreter, after the calls already queued. */
  async reset(id: string): Promise<SessionInfo> {
    const session = await this.#sessions.find(id);
    return await session.queue.run(() => {
      this.#discard(session, "the session was reset");
      session.lost = undefined;
      if (session.mode === "persistent") {
        this.#boot(session);
        this.#durable?.schedule(session);
      }
      return this.#info(session);
    });
  }

  /** Deletes a session and terminates its interpreter, even mid-call. */
  async delete(id: string): Promise<void> {
    const session = await this.#sessions.find(id);
    await this.#remove(session, "the session was deleted");
  }

  /** Removes sessions unused for the idle TTL, and hibernates those idle for hibernateAfter. */
  sweep(now = Date.now()): void {
    for (const session of this.#sessions.values()) {
      if (session.queue.size > 0) continue;
      const { idleTtlSeconds, hibernateAfterSeconds } = this.#scope(session).policy.limits;
      const idle = now - session.lastUsed;
      if (!isDefaultSession(session.id) && idle > idleTtlSeconds * 1000) {
        this.#remove(session, "the session expired");
      } else if (this.#durable && session.slot && idle > hibernateAfterSeconds * 1000) {
        session.queue.run(() => this.#durable!.hibernate(session), true).catch(() => {});
      }
    }
    this.#durable?.sweepStore(now, (id) => isDefaultSession(id) || this.#sessions.has(id))
      .catch(() => {});
  }

  /**
   * Refuses new work, lets running calls finish and checkpoints every live session, all within
   * `graceMs`, then stops every worker.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    this.#watchdog.stop();
    const durable = this.#durable;
    const finish = [...this.#sessions.values()].map(async (s) => {
      await s.queue.idle();
      if (durable && s.slot) {
        await s.queue.run(async () => {
          await durable.checkpoint(s);
          await durable.checkpoints.release(s);
        }, true);
      }
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled(finish),
      new Promise((r) => timer = setTimeout(r, graceMs)),
    ]);
    clearTimeout(timer);
    durable?.close(this.#sessions.values());
    for (const session of this.#sessions.values()) {
      this.#discard(session, "the server is shutting down");
    }
    for (const scope of [this.#server, ...this.#tenantScopes?.all() ?? []]) scope.pool.close();
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Live interpreters and hibernated sessions, for the metrics. */
  counts(): { live: number; hibernated: number } {
    return this.#sessions.counts();
  }

  async #run(session: Session, request: CallRequest): Promise<Answer> {
    const scope = this.#scope(session);
    const { limits } = scope.policy;
    const timeoutMs = Math.min(request.timeoutMs ?? limits.timeoutMs, limits.maxTimeoutMs);
    if (session.lost) return this.#tellLost(session, timeoutMs, request.code);
    await this.#runner(session, timeoutMs);
    const interpreter = await (session.slot ?? this.#boot(session)).ready;
    // The call's time starts once its interpreter is there, as it always has.
    const started = performance.now();
    let packages = emptyReport();
    // Packages load first, inside the call's time limit; the code gets what is left.
    if (scope.loader) {
      packages = await loadPackages(scope.loader, interpreter, request.packages ?? [], timeoutMs);
    }
    for (const name of interpreter.packages) session.packages.add(name);
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const network: NetworkUse = { requests: 0, bytesIn: 0, refused: 0, rateLimited: [] };
    // An interpreter lost meanwhile (packages past the time limit, the memory watchdog) ends
    // the call at once, with the reason it was lost for.
    const end: ExecEnd = await interpreter.exec(request.code, {
      timeoutMs: left,
      graceMs: limits.graceMs,
      authorizedImports: request.authorizedImports ?? session.authorizedImports,
      onOutput: request.onOutput,
      tools: this.#tools(scope, request, session, network),
    });
    session.calls++;
    session.memoryBytes = interpreter.memoryBytes;
    session.lastUsed = Date.now();
    const durationMs = performance.now() - started;
    // An interpreter lost to a limit gets the session's last checkpoint back, when one is stored.
    const recovered = end.kind === "killed" && end.reason !== "stopped" &&
      await this.#recover(session, interpreter, end.detail);
    if (!recovered && (session.mode === "ephemeral" || !interpreter.alive)) {
      this.#replace(session, interpreter);
    }
    // A recovered session is what the store holds: there is nothing new to checkpoint.
    const checkpoint = recovered
      ? undefined
      : await this.#durable?.afterCall(session, request.checkpoint === "sync");
    const answer = serialize(classify(end, timeoutMs, false, recovered), {
      durationMs,
      memoryBytes: interpreter.memoryBytes,
      packages,
      network: network.requests ? network : undefined,
      extra: answerFields(session, checkpoint),
    });
    this.#onCall(session.id, answer, request.code, session.owner);
    return answer;
  }

  /**
   * A call's host tools and who answers them, and its outbound HTTP; none when it has no tools
   * and neither upstream servers nor network hosts are set.
   */
  #tools(
    scope: SessionScope,
    request: CallRequest,
    session: Session,
    use: NetworkUse,
  ): CallTools | undefined {
    const { outbound, upstream } = scope;
    if (!request.tools?.length && !upstream && !outbound) return undefined;
    const { toolCallMs, toolCalls } = scope.policy.limits;
    return {
      tools: request.tools,
      onToolCall: request.onToolCall,
      signal: request.signal,
      upstream,
      toolCallMs,
      toolCalls,
      count: this.#countTool,
      outbound: outbound &&
        ((req, timeoutMs, signal) =>
          outbound.send(session.id, req, timeoutMs, signal, use, session.owner)),
    };
  }

  /**
   * A client's answer to a tool call of session `id`'s running call: `unknown` when that session
   * has no such call waiting (another session's call id included), 404 for an unknown session.
   */
  async answerTool(id: string, callId: string, outcome: ToolOutcome): Promise<Answered> {
    const session = await this.#sessions.find(id);
    return session.slot?.interpreter?.answerTool(callId, outcome) ?? "unknown";
  }

  /** The answer for a call on a session whose interpreter was lost while it was idle. */
  #tellLost(session: Session, timeoutMs: number, code: string): Answer {
    const end: ExecEnd = { kind: "killed", ...session.lost! };
    session.lost = undefined;
    session.calls++;
    session.lastUsed = Date.now();
    const answer = serialize(classify(end, timeoutMs, true), { durationMs: 0, memoryBytes: 0 });
    this.#onCall(session.id, answer, code, session.owner);
    return answer;
  }

  /** Restores the last checkpoint of a session whose interpreter a limit killed; false if none. */
  async #recover(session: Session, interpreter: Interpreter, detail: string): Promise<boolean> {
    if (!this.#durable || session.mode !== "persistent" || interpreter.alive) return false;
    interpreter.terminate();
    return await this.#durable.recover(session, `the interpreter was lost (${detail})`);
  }

  /** Drops a used or dead interpreter; a persistent session gets its replacement at once. */
  #replace(session: Session, interpreter: Interpreter): void {
    interpreter.terminate();
    session.slot = undefined;
    session.packages.clear();
    if (session.mode === "persistent" && this.#sessions.holds(session)) {
      this.#boot(session);
    }
  }

  /** An interpreter that dies while its session is idle is replaced, and the next call told. */
  #onDeath(session: Session, interpreter: Interpreter, reason: KillReason, detail: string): void {
    if (session.interpreter !== interpreter || !this.#sessions.holds(session)) return;
    if (session.queue.running) return; // the running call reports it
    session.lost = { reason, detail };
    // Not after the memory watchdog: the restored interpreter would be as large, and stopped
    // again while idle, over and over; the next call is told, as without a store.
    if (!this.#durable || reason === "stopped" || reason === "memory" || !session.durable.stored) {
      return this.#replace(session, interpreter);
    }
    // On a durable store the session gets its last checkpoint back, before any call runs; the
    // next call then runs and its answer says what was restored and what was lost.
    session.slot = undefined;
    session.queue.run(async () => {
      if (session.lost && await this.#recover(session, interpreter, detail)) {
        session.lost = undefined;
      } else if (!session.slot) this.#replace(session, interpreter);
    }, true).catch(() => {});
  }

  /** Starts the session's interpreter (from the pool) in its slot. */
  #boot(session: Session): Slot {
    const slot: Slot = {
      ready: this.#scope(session).pool.take().then(
        (interpreter) => {
          if (session.slot === slot) this.#adopt(session, interpreter, slot);
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

  /** Makes `interpreter` the session's, watching for its death. */
  #adopt(session: Session, interpreter: Interpreter, slot?: Slot): void {
    const held = slot ?? { ready: Promise.resolve(interpreter) };
    held.interpreter = interpreter;
    session.slot = held;
    interpreter.onDeath = (reason, detail) => this.#onDeath(session, interpreter, reason, detail);
  }

  #discard(session: Session, why: string): void {
    const slot = session.slot;
    session.slot = undefined;
    session.packages.clear();
    slot?.ready.then((interpreter) => interpreter.terminate(why), () => {});
  }

  /** Forgets a session here and in the store; the default session starts again, empty. */
  async #remove(session: Session, why: string): Promise<void> {
    this.#sessions.remove(session);
    this.#discard(session, why);
    await this.#durable?.removed(session).catch(() => {});
  }

  #assertOpen(): void {
    if (this.#closing) throw new Unavailable("The server is shutting down");
  }

  #info(s: Session): SessionInfo {
    return infoOf(s, this.#instance, this.#scope(s).policy.limits.idleTtlSeconds * 1000);
  }

  /** What `tenant`'s sessions run with: its own policy's scope, else the server's. */
  #scopeOf(tenant: string | undefined): SessionScope {
    return (tenant && this.#tenantScopes?.of(tenant)) || this.#server;
  }

  #scope(session: Session): SessionScope {
    return this.#scopeOf(session.owner);
  }

  /** The limits of `tenant`'s sessions (no tenant: the operator's, the server's policy). */
  limitsFor(tenant?: string): Limits {
    return this.#scopeOf(tenant).policy.limits;
  }

  /** The limits session `id` runs under (its tenant's policy); 404 when unknown. */
  async limitsOf(id: string): Promise<Limits> {
    return this.#scope(await this.#sessions.find(id)).policy.limits;
  }
}
