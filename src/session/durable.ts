/**
 * Durable sessions: when a session is checkpointed (coalesced after calls, or at once for a
 * `checkpoint: "sync"` call), hibernated and restored, and which instance may run it. The
 * manager calls in at its seams; the store's side is in `checkpoints.ts`.
 */
import { logSecurity } from "../audit.ts";
import { SessionLost, Unavailable } from "../errors.ts";
import type { Limits } from "../policy/schema.ts";
import type { Interpreter } from "../sandbox/interpreter.ts";
import type { SessionMeta, StoredSession } from "../store/store.ts";
import { messageOf } from "../worker/errors.ts";
import {
  type CheckpointReport,
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
  // A failure is said in every answer until a checkpoint is stored; a sync call's success too,
  // so that its client knows the state is stored.
  if (checkpoint) fields.checkpoint = checkpoint;
  return fields;
}

/** How long to wait before trying a failed checkpoint again, at most. */
const MAX_RETRY_MS = 30_000;
/**
 * The share of a session's time its coalesced checkpoints may take: after one that took C ms
 * (from taking the state to the store's acknowledgement) the next waits C × 19 ms, so under
 * continuous calls checkpoint work stays under 5% and the durability window widens with the
 * session's size; at most to BUDGET_MAX_WAIT_MS. Sync calls, hibernation and shutdown ignore it.
 */
const CHECKPOINT_SHARE = 0.05;
const BUDGET_MAX_WAIT_MS = 30_000;

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

  /**
   * The stored metadata of a session this instance does not know, if the store has it. A refused
   * record is 410 once: it is deleted, so the id is unknown afterwards.
   */
  async lookup(id: string): Promise<SessionMeta | undefined> {
    try {
      return await this.checkpoints.meta(id);
    } catch (err) {
      if (err instanceof StoreUnavailable) return undefined;
      if (!(err instanceof SessionLostError)) throw err;
      await this.checkpoints.store.deleteSession(id).catch(() => false);
      throw new SessionLost(err.message);
    }
  }

  /** A new session: take its lease and store it, so other instances and restarts know it. */
  async created(session: Session): Promise<void> {
    await this.checkpoints.acquire(session, performance.now()).catch(() => false);
    // Known to the store at once (other instances, restarts); its state follows with the
    // first checkpoint.
    await this.checkpoints.saveMeta(session).catch(() => {});
    if (session.mode === "persistent") this.schedule(session);
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
    let leased: boolean;
    let meta: SessionMeta | undefined;
    // A write under way would make the store look older than the interpreter here.
    await checkpoints.settled(session.id);
    try {
      leased = await checkpoints.acquire(session, deadline);
      if (leased) meta = await checkpoints.meta(session.id);
    } catch (err) {
      // The store is down: nobody else can take the lease either; a live session keeps serving.
      if (session.slot || !d.stored) return;
      throw new Unavailable(`Session '${session.id}' cannot be restored now: ${messageOf(err)}`);
    }
    if (!leased) {
      throw new Unavailable(
        `Session '${session.id}' is running on another instance and was not released within ` +
          `the call's time limit; try again`,
      );
    }
    if (!meta) {
      // The store forgot it (e.g. a Redis without persistence restarted): what is live here is
      // the latest state, and is stored again.
      if (session.slot || !d.stored) {
        d.stored = false;
        if (session.slot) this.schedule(session);
        return;
      }
      throw new SessionLostError(
        `Session '${session.id}' cannot be restored: the store no longer holds its checkpoint`,
      );
    }
    if (meta.seq < d.seq) throw rolledBack(session.id, meta.seq, d.seq);
    if (session.slot && meta.seq === d.seq) return;
    if (typeof meta.unstored === "string") {
      throw new SessionLostError(
        `Session '${session.id}' cannot be restored: its latest state could not be ` +
          `checkpointed (${meta.unstored}), and an older one would lose calls without a word`,
      );
    }
    if (session.slot) this.hooks.discard(session, "another instance ran the session since");
    d.seq = meta.seq;
    d.stored = true;
    // Stored with no state yet (just created elsewhere): a fresh interpreter is its state.
    if (meta.empty) {
      d.chain = undefined;
      return;
    }
    await this.#restore(session);
  }

  /**
   * An interpreter lost to a limit (time, memory): the session gets its last stored checkpoint
   * back instead of an empty interpreter. False when there is none (nothing stored yet, the store
   * is down, the restore failed): the caller starts the session empty, as without a store.
   */
  async recover(session: Session, why: string): Promise<boolean> {
    const d = session.durable;
    if (session.mode !== "persistent" || !d.stored) return false;
    try {
      // A write under way is the latest state: wait for it, then read what the store holds.
      await this.checkpoints.settled(session.id);
      const meta = await this.checkpoints.meta(session.id);
      if (!meta || meta.empty || meta.unstored || meta.seq < d.seq) return false;
      this.hooks.discard(session, why);
      await this.#restore(session, [{ what: "the state since the last checkpoint", why }]);
    } catch {
      return false;
    }
    this.#clearTimer(session);
    d.dirty = false;
    d.dirtySince = undefined;
    return true;
  }

  async #restore(session: Session, lost: { what: string; why: string }[] = []): Promise<void> {
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
    // The restored image is the chain's end: the next checkpoint is a delta against it.
    session.durable.chain = meta.chain;
    session.durable.tip = meta.chain
      ? { interpreter: new WeakRef(interpreter), generation: 0 }
      : undefined;
    session.durable.restored = {
      ms: performance.now() - started,
      lost: [...lost, ...interpreter.restored?.lost ?? []],
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
    return await this.checkpoint(session, true);
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
      Math.max(
        Math.min(checkpointDelayMs, Math.max(0, d.dirtySince + checkpointMaxMs - now)),
        (d.notBefore ?? 0) - now,
      );
    d.quietTimer = setTimeout(() => {
      d.quietTimer = undefined;
      // Calls waiting go first (each re-dirties the session), unless checkpointMaxMs is up.
      const overdue = performance.now() - (d.dirtySince ?? now) >= checkpointMaxMs;
      if (session.queue.size > 0 && !overdue) return this.schedule(session, checkpointDelayMs);
      session.queue.run(() => this.checkpoint(session, false, true), true).catch(() => {});
    }, wait);
  }

  #clearTimer(session: Session): void {
    clearTimeout(session.durable.quietTimer);
    session.durable.quietTimer = undefined;
  }

  /**
   * Checkpoints the session now if it changed (call it inside the session's queue; `inCall`
   * when that is a call's own task). The queue is held only while the state is taken; the
   * store write goes on behind it, and is awaited unless `background`. With a shared store the
   * lease is then given back unless calls are waiting, so other instances can run the session
   * between calls.
   */
  async checkpoint(
    session: Session,
    inCall = false,
    background = false,
  ): Promise<CheckpointReport> {
    const interpreter = await session.slot?.ready.catch(() => undefined);
    const d = session.durable;
    if (!interpreter?.alive || !d.dirty) {
      await this.checkpoints.settled(session.id);
      await this.#release(session, inCall);
      return { ok: true };
    }
    if (this.checkpoints.writing(session.id)) {
      // One write at a time per session, so a store slower than the calls never piles up
      // copies of a big session: a coalesced checkpoint comes once it lands, a sync one waits.
      if (background) {
        this.checkpoints.settled(session.id).then(() => this.schedule(session));
        return { ok: true };
      }
      await this.checkpoints.settled(session.id);
    }
    d.dirtySince = undefined;
    // Calls after this point dirty it again; a failed write does too, below.
    d.dirty = false;
    const { written } = await this.checkpoints.save(session, interpreter);
    const done = written.then(async (result) => {
      if (result.ok) {
        this.#retries.delete(session.id);
        // The one-time storing of the base is not the session's cost to bear again and again.
        const spent = d.cost ?? result.ms ?? 0;
        d.notBefore = performance.now() +
          Math.min(BUDGET_MAX_WAIT_MS, spent * (1 / CHECKPOINT_SHARE - 1));
        await this.#release(session, inCall && !background);
      } else {
        // Checkpoints resume when the store returns.
        d.dirty = true;
        const tries = (this.#retries.get(session.id) ?? 0) + 1;
        this.#retries.set(session.id, tries);
        this.schedule(session, Math.min(MAX_RETRY_MS, 500 * 2 ** tries));
      }
      return result;
    });
    if (!background) return await done;
    done.catch(() => {}); // nothing in it throws; an unhandled rejection would end the server
    return { ok: true };
  }

  /** Gives a shared store's lease back when nothing here waits to run and all is stored. */
  async #release(session: Session, inCall: boolean): Promise<void> {
    const d = session.durable;
    const waiting = session.queue.size - (inCall ? 1 : 0);
    const give = this.checkpoints.store.shared && !this.checkpoints.keepLeases;
    if (give && waiting === 0 && d.stored && !d.dirty) {
      await this.checkpoints.release(session);
    }
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

/**
 * The store holds an older checkpoint than one this instance wrote or restored: someone wrote an
 * old, validly sealed record back. Restoring it would silently undo the session's later calls.
 */
function rolledBack(id: string, stored: number, known: number): SessionLostError {
  logSecurity("checkpoint-rejected", { session: id, reason: "rolled-back" });
  return new SessionLostError(
    `Session '${id}' cannot be restored: the store holds its checkpoint ${stored}, older than ` +
      `checkpoint ${known} this server already had (the record was rolled back), so its state ` +
      "is lost",
  );
}

export { SessionLostError };
