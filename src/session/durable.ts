/**
 * Durable sessions: when a session is checkpointed (coalesced after calls, or at once for a
 * `checkpoint: "sync"` call), hibernated and restored, and which instance may run it. The
 * manager calls in at its seams; the store's side is in `checkpoints.ts`.
 */
import { Unavailable } from "../errors.ts";
import type { Limits } from "../policy/schema.ts";
import type { Interpreter } from "../sandbox/interpreter.ts";
import type { SessionMeta, StoredSession } from "../store/store.ts";
import { messageOf } from "../worker/errors.ts";
import {
  type Checkpoints,
  type Loaded,
  SessionLostError,
  StoreUnavailable,
} from "./checkpoints.ts";
import type { Session } from "./session.ts";

/** The manager's primitives durable sessions need. */
export interface DurableHooks {
  /** Boots an interpreter from a checkpoint. */
  restore(loaded: Loaded): Promise<Interpreter>;
  /** Makes `interpreter` the session's. */
  adopt(session: Session, interpreter: Interpreter): void;
  /** Drops the session's interpreter. */
  discard(session: Session, why: string): void;
  /** Hibernates another session if the live cap is reached; 429 when every one is busy. */
  makeRoom(forSession?: Session): Promise<void>;
}

/** A checkpoint outcome as an answer reports it. */
export interface CheckpointReport {
  ok: boolean;
  reason?: string;
}

/** `restored` and `restoreMs` after a restore, `checkpoint` when one failed (PROTOCOL §5). */
export function answerFields(
  session: Session,
  checkpoint?: CheckpointReport,
): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  const restored = session.durable.restored;
  if (restored) {
    session.durable.restored = undefined;
    fields.restored = true;
    fields.restoreMs = Math.round(restored.ms * 10) / 10;
    if (restored.lost.length) fields.lost = restored.lost;
  }
  if (checkpoint && !checkpoint.ok) fields.checkpoint = checkpoint;
  return fields;
}

/** How long to wait before trying a failed checkpoint again, at most. */
const MAX_RETRY_MS = 30_000;

/** Checkpoints, hibernation, restores and leases for the sessions of one manager. */
export class DurableSessions {
  readonly #retries = new Map<string, number>();

  constructor(
    readonly checkpoints: Checkpoints,
    private readonly limits: Limits,
    private readonly hooks: DurableHooks,
  ) {}

  get instanceId(): string {
    return this.checkpoints.instanceId;
  }

  /** Sessions in the store, for a server that starts. */
  stored(): Promise<StoredSession[]> {
    return this.checkpoints.list();
  }

  /** The stored metadata of a session this instance does not know, if the store has it. */
  async lookup(id: string): Promise<SessionMeta | undefined> {
    try {
      return await this.checkpoints.meta(id);
    } catch (err) {
      if (err instanceof StoreUnavailable) return undefined;
      throw err;
    }
  }

  /** A new session: take its lease and store it, so other instances and restarts know it. */
  async created(session: Session): Promise<void> {
    await this.checkpoints.acquire(session, performance.now()).catch(() => false);
    if (session.mode === "persistent") this.schedule(session);
    else await this.checkpoints.saveMeta(session).catch(() => {});
  }

  /**
   * Makes sure this instance may run the session and that its interpreter holds the session's
   * latest state: takes the lease (waiting for another instance until `deadline`), and restores
   * the last checkpoint when the interpreter here is missing or older than the store's.
   */
  async ensureRunner(session: Session, deadline: number): Promise<void> {
    const { checkpoints } = this;
    const d = session.durable;
    // Holding the lease all along: nobody else ran the session.
    if (d.leased && checkpoints.holds(session.id) && (session.slot || !d.stored)) return;
    if (!await checkpoints.acquire(session, deadline).catch(() => undefined)) {
      if (session.slot && !checkpoints.store.shared) return; // the store is down: keep serving
      throw new Unavailable(
        `Session '${session.id}' is running on another instance and was not released within ` +
          `the call's time limit; try again`,
      );
    }
    let meta: SessionMeta | undefined;
    try {
      meta = await checkpoints.meta(session.id);
    } catch (err) {
      if (session.slot || !d.stored) return; // store failures never fail a live session
      throw new Unavailable(`Session '${session.id}' cannot be restored now: ${messageOf(err)}`);
    }
    if (!meta) {
      if (!d.stored) return; // new here, never checkpointed yet
      throw new SessionLostError(
        `Session '${session.id}' cannot be restored: the store no longer holds its checkpoint`,
      );
    }
    if (session.slot && meta.seq === d.seq) return;
    if (session.slot) this.hooks.discard(session, "another instance ran the session since");
    await this.#restore(session);
  }

  async #restore(session: Session): Promise<void> {
    await this.hooks.makeRoom(session);
    const started = performance.now();
    const loaded = await this.checkpoints.load(session.id);
    let interpreter: Interpreter;
    try {
      interpreter = await this.hooks.restore(loaded);
    } catch (err) {
      throw new SessionLostError(
        `Session '${session.id}' cannot be restored: its checkpoint did not boot ` +
          `(${messageOf(err)}), so its state is lost`,
      );
    }
    const { meta } = loaded;
    session.created = meta.created;
    session.calls = Math.max(session.calls, meta.calls);
    session.packages.clear();
    for (const name of interpreter.packages) session.packages.add(name);
    session.durable.seq = meta.seq;
    session.durable.stored = true;
    session.durable.dirty = false;
    session.durable.restored = {
      ms: performance.now() - started,
      lost: interpreter.restored?.lost ?? [],
    };
    this.hooks.adopt(session, interpreter);
  }

  /** After a call changed the session: checkpoint now (`sync`) or soon (coalesced). */
  async afterCall(session: Session, sync: boolean): Promise<CheckpointReport | undefined> {
    if (session.mode !== "persistent") return undefined;
    session.durable.dirty = true;
    if (!sync) {
      this.schedule(session);
      return session.durable.failure ? { ok: false, reason: session.durable.failure } : undefined;
    }
    this.#clearTimer(session);
    return await this.checkpoint(session);
  }

  /**
   * Schedules a checkpoint once the session is quiet for `checkpointDelayMs`, and at most
   * `checkpointMaxMs` after its first uncheckpointed change. It runs in the session's queue,
   * between calls, off the answer's path.
   */
  schedule(session: Session, after?: number): void {
    const d = session.durable;
    d.dirty = true;
    const now = performance.now();
    d.dirtySince ??= now;
    clearTimeout(d.quietTimer);
    const { checkpointDelayMs, checkpointMaxMs } = this.limits;
    const wait = after ??
      Math.min(checkpointDelayMs, Math.max(0, d.dirtySince + checkpointMaxMs - now));
    d.quietTimer = setTimeout(() => {
      d.quietTimer = undefined;
      session.queue.run(() => this.checkpoint(session)).catch(() => {});
    }, wait);
  }

  #clearTimer(session: Session): void {
    clearTimeout(session.durable.quietTimer);
    session.durable.quietTimer = undefined;
  }

  /** Checkpoints the session now if it changed (call it inside the session's queue). */
  async checkpoint(session: Session): Promise<CheckpointReport> {
    const interpreter = await session.slot?.ready.catch(() => undefined);
    const d = session.durable;
    if (!interpreter?.alive || !d.dirty) return { ok: true };
    d.dirtySince = undefined;
    const result = await this.checkpoints.save(session, interpreter);
    if (result.ok) {
      this.#retries.delete(session.id);
      // A shared store lets other instances run the session between calls.
      if (this.checkpoints.store.shared && session.queue.waiting === 0) {
        await this.checkpoints.release(session);
      }
    } else {
      // Checkpoints resume when the store returns.
      const tries = (this.#retries.get(session.id) ?? 0) + 1;
      this.#retries.set(session.id, tries);
      this.schedule(session, Math.min(MAX_RETRY_MS, 500 * 2 ** tries));
    }
    return result;
  }

  /**
   * Checkpoints an idle session and stops its interpreter (call it inside the session's queue).
   * A session whose checkpoint fails stays live: hibernating it would lose its state.
   */
  async hibernate(session: Session): Promise<boolean> {
    if (!session.slot || session.mode !== "persistent" || session.queue.waiting > 0) return false;
    const result = await this.checkpoint(session);
    if (!result.ok || !session.durable.stored) return false;
    this.#clearTimer(session);
    this.hooks.discard(session, "the session hibernated");
    await this.checkpoints.release(session);
    return true;
  }

  /** A session deleted or expired: out of the store too. */
  async removed(session: Session): Promise<void> {
    this.#clearTimer(session);
    this.#retries.delete(session.id);
    await this.checkpoints.remove(session);
  }

  /**
   * The store's own upkeep, run by the sweeper: sessions idle past the TTL are removed, and past
   * `limits.storedSessions` the least recently used ones, unless some instance runs them.
   */
  async sweepStore(now: number, keep: (id: string) => boolean): Promise<string[]> {
    const ttl = this.limits.idleTtlSeconds * 1000;
    const { store } = this.checkpoints;
    const stored = (await this.stored().catch(() => [])).sort((a, b) =>
      a.meta.lastUsed - b.meta.lastUsed
    );
    const removed: string[] = [];
    let over = stored.length - this.limits.storedSessions;
    for (const { id, meta } of stored) {
      if (keep(id)) continue;
      const expired = now - meta.lastUsed > ttl;
      if (!expired && over <= 0) continue;
      if (await store.leaseHolder(id).catch(() => "unknown")) continue;
      if (await store.deleteSession(id).catch(() => false)) {
        removed.push(id);
        over--;
      }
    }
    return removed;
  }

  /** Stops timers; the manager checkpoints what is live before it calls this. */
  close(sessions: Iterable<Session>): void {
    for (const session of sessions) this.#clearTimer(session);
    this.checkpoints.close();
  }
}

export { SessionLostError };
