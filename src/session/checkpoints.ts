/**
 * Durable sessions seen from one instance: checkpoints written to the session store and read
 * back, the boot snapshot they are deltas against, and the leases that keep one runner per
 * session across instances. The manager decides when; this file does the store's side.
 */
import { logEvent, logSecurity } from "../audit.ts";
import { metrics } from "../metrics.ts";
import type { Limits } from "../policy/schema.ts";
import { snapshotId } from "../sandbox/base_check.ts";
import type { Interpreter } from "../sandbox/interpreter.ts";
import {
  type Checkpoint,
  CheckpointRejected,
  type Link,
  type SessionMeta,
  type Store,
  type StoredSession,
  StoreUnavailable,
} from "../store/store.ts";
import { messageOf } from "../worker/errors.ts";
import type { Session } from "./session.ts";

/** How long a lease lasts unless renewed; an instance killed with -9 frees its sessions then. */
export const LEASE_TTL_MS = 10_000;
/** How often held leases are renewed. */
const RENEW_EVERY_MS = 3_000;
/** How often a call waiting for another instance's lease asks again. */
const LEASE_POLL_MS = 50;
/**
 * Links a chain may have after its first before a write compacts them: a restore reads at most
 * this many plus two. The links after the first are merged into one; all of them, into a new
 * first, once those after it weigh half as much as it (so a big session's first link, its whole
 * heap, is rewritten rarely, and small changes stay small).
 */
export const MAX_LINKS = 8;
/** How often a restore reads a chain again that a compaction replaced under it. */
const READ_ATTEMPTS = 3;

/** What the store could not give back: the session is gone, and the caller is told why. */
/**
 * A record that failed authentication (damaged, another session's, sealed under another key) is
 * the session's state lost, said with a `security` event; other errors pass through.
 */
function refused(id: string, err: unknown): unknown {
  if (!(err instanceof CheckpointRejected)) return err;
  logSecurity("checkpoint-rejected", { session: id, reason: err.reason });
  return new SessionLostError(
    `Session '${id}' cannot be restored: its checkpoint was refused (${err.reason}: it ` +
      `failed authentication or is damaged), so its state is lost`,
  );
}

export class SessionLostError extends Error {
  override name = "SessionLost";
}

/** A checkpoint as read back: what the manager needs to restore the session. */
export interface Loaded {
  meta: SessionMeta;
  /** The checkpoint's bytes, for `Interpreter.start({ checkpoint })`. */
  checkpoint: Uint8Array<ArrayBuffer>;
  /** Its memory: the chain's deltas over `base`, oldest first (`Interpreter.start({ links })`). */
  links: Uint8Array<ArrayBuffer>[];
  /** The boot snapshot the checkpoint is a delta against. */
  base: Uint8Array;
}

/** A checkpoint outcome as an answer reports it: stored, or why not. */
export interface CheckpointReport {
  ok: boolean;
  reason?: string;
  /** When stored: the bytes it wrote (its link sealed, its description before sealing), its number. */
  bytes?: number;
  seq?: number;
  /** From taking the state to the store's acknowledgement. */
  ms?: number;
}

/** A checkpoint as the interpreter took it. */
type Taken = Awaited<ReturnType<Interpreter["checkpoint"]>>;

/** A checkpoint's metadata as it is when the state is taken; the write numbers it (`seq`). */
type TakenMeta =
  & Pick<SessionMeta, "mode" | "created" | "lastUsed" | "calls" | "packages" | "baseId">
  & Record<string, unknown>;

/** What `Checkpoints` works with. */
export interface CheckpointsOptions {
  store: Store;
  instanceId: string;
  limits: Limits;
  /** The boot snapshot every pool interpreter restores; checkpoints are deltas against it. */
  base: Uint8Array;
  log?: (line: string) => void;
  /**
   * Keep a session's lease while it is live, instead of giving it back after each checkpoint:
   * with forwarding (`MOAT_ADVERTISE_URL`) the session stays where it runs and other instances
   * pass its calls there. @default {false}
   */
  keepLeases?: boolean;
}

/** Bytes read from the store as a view the worker can be given (moved when whole). */
function owned(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer
    ? bytes as Uint8Array<ArrayBuffer>
    : new Uint8Array(bytes);
}

/** The store's side of durable sessions, for one instance. */
export class Checkpoints {
  readonly store: Store;
  readonly instanceId: string;
  readonly keepLeases: boolean;
  /**
   * The bases this instance knows, by id: each pool's (the server's policy, tenants' own) and
   * those read from the store for a restore, so a checkpoint can always store its base.
   */
  readonly #bases = new Map<string, Uint8Array>();
  /** sha256 of the server's pool's base: named by checkpoints whose interpreter names none. */
  readonly baseId: Promise<string>;
  readonly #baseStored = new Map<string, Promise<void>>();
  readonly #held = new Set<string>();
  /** The last checkpoint write of each session with one under way. */
  readonly #writes = new Map<string, Promise<CheckpointReport>>();
  readonly #renewer: ReturnType<typeof setInterval>;
  readonly #log: (line: string) => void;

  constructor(options: CheckpointsOptions) {
    this.store = options.store;
    this.instanceId = options.instanceId;
    this.keepLeases = options.keepLeases ?? false;
    this.#log = options.log ?? (() => {});
    this.baseId = this.addBase(options.base);
    this.#renewer = setInterval(() => this.#renew(), RENEW_EVERY_MS);
    Deno.unrefTimer(this.#renewer);
  }

  /**
   * Stores the base once (content-addressed), so checkpoints survive a restart and an upgrade;
   * asked again at every checkpoint, since a store may forget (a Redis without persistence).
   */
  async #storeBase(id: string): Promise<void> {
    const bytes = this.#bases.get(id);
    if (!bytes || await this.store.hasBase(id)) return;
    let storing = this.#baseStored.get(id);
    if (!storing) {
      storing = this.store.putBase(id, bytes).finally(() => this.#baseStored.delete(id));
      this.#baseStored.set(id, storing);
    }
    await storing;
  }

  /** Makes a base known here (a tenant policy's pool has its own); resolves with its id. */
  async addBase(bytes: Uint8Array): Promise<string> {
    const id = await snapshotId(bytes);
    this.#bases.set(id, bytes);
    return id;
  }

  /** The base a checkpoint of this interpreter is a delta against. */
  async #baseOf(interpreter: Interpreter): Promise<string> {
    return interpreter.baseId ?? await this.baseId;
  }

  /** Sessions the store holds, for a server that starts (listed lazily, restored on use). */
  list(): Promise<StoredSession[]> {
    return this.store.listSessions();
  }

  /**
   * The metadata of a session's checkpoint, or undefined when the store has none. Throws
   * SessionLostError when the record is refused (a `security` event).
   */
  async meta(id: string): Promise<SessionMeta | undefined> {
    try {
      return await this.store.getMeta(id);
    } catch (err) {
      throw refused(id, err);
    }
  }

  /**
   * Takes the session's lease, waiting for another instance to release it or for it to expire,
   * until `deadline` (performance.now() time). Returns whether this instance holds it now.
   */
  async acquire(session: Session, deadline: number): Promise<boolean> {
    for (;;) {
      if (await this.store.acquireLease(session.id, this.instanceId, LEASE_TTL_MS)) {
        this.#held.add(session.id);
        session.durable.leased = true;
        return true;
      }
      if (performance.now() + LEASE_POLL_MS > deadline) return false;
      await new Promise((r) => setTimeout(r, LEASE_POLL_MS));
    }
  }

  /** Gives the session's lease up (after its checkpoint is stored, or when it is removed). */
  async release(session: Session): Promise<void> {
    session.durable.leased = false;
    this.#held.delete(session.id);
    await this.store.releaseLease(session.id, this.instanceId).catch(() => {});
  }

  /**
   * Keeps held leases alive; a lease lost meanwhile makes the next call take it again. A store
   * that does not answer took nothing away: the lease stays held, as a call on a live session
   * would keep serving anyway, and no call waits for the store to time out again.
   */
  async #renew(): Promise<void> {
    for (const id of [...this.#held]) {
      const ok = await this.store.renewLease(id, this.instanceId, LEASE_TTL_MS).catch((err) =>
        err instanceof StoreUnavailable
      );
      if (!ok) this.#held.delete(id);
    }
  }

  /**
   * Forgets every lease held here, without a word to the store: this instance's heartbeat lapsed,
   * so another may have taken them over; each session's next call asks the store again.
   */
  forgetLeases(): void {
    this.#held.clear();
  }

  /** Whether the lease of `id` is still held here (renewals may have failed). */
  holds(id: string): boolean {
    return this.#held.has(id);
  }

  /**
   * Checkpoints the session's interpreter. Resolves as soon as its state is taken, so the
   * interpreter is free for the next call, with `written`: the store write, which goes on behind
   * it (a big session's write takes seconds). One session's writes land in the order they were
   * taken. Never throws: a failure is what `written` resolves to (and is logged).
   */
  async save(
    session: Session,
    interpreter: Interpreter,
  ): Promise<{ written: Promise<CheckpointReport> }> {
    const started = performance.now();
    const d = session.durable;
    let taken: Taken;
    let meta: TakenMeta;
    try {
      meta = this.#meta(session, await this.#baseOf(interpreter));
      // A delta against the last checkpoint only when that one is stored and this worker took
      // (or restored) it; else against the base, and the chain starts again.
      const against = d.tip?.interpreter.deref() === interpreter && d.chain
        ? d.tip.generation
        : undefined;
      taken = await interpreter.checkpoint(meta.baseId, against);
      metrics.checkpointHeld(performance.now() - started);
    } catch (err) {
      d.tip = undefined;
      const report = this.#failed(session, err, 0, started);
      // An interpreter stopped meanwhile (the session deleted, reset, or lost to a limit) took its
      // state with it: nothing to mark, and a mark would bring a deleted session back.
      if (!interpreter.alive) return { written: Promise.resolve(report) };
      return {
        written: this.#after(session.id, () => this.#unstored(session, interpreter, report)),
      };
    }
    return {
      written: this.#after(
        session.id,
        () => this.#write(session, interpreter, meta, taken, started),
      ),
    };
  }

  /** Runs a store write of the session after the ones before it; `settled` waits for it. */
  #after(id: string, write: () => Promise<CheckpointReport>): Promise<CheckpointReport> {
    const written = this.settled(id).then(write);
    const tail = written.finally(() => {
      if (this.#writes.get(id) === tail) this.#writes.delete(id);
    });
    this.#writes.set(id, tail);
    return written;
  }

  /**
   * A state that could not be taken is marked in the store (`unstored`, with the reason), so that
   * after a restart the session is lost (410), not brought back older or empty without a word.
   * The next checkpoint that succeeds replaces the mark.
   */
  async #unstored(
    session: Session,
    interpreter: Interpreter,
    report: CheckpointReport,
  ): Promise<CheckpointReport> {
    const d = session.durable;
    if (!interpreter.alive) return report;
    try {
      const seq = d.seq + 1;
      const baseId = await this.#baseOf(interpreter);
      const meta = { ...this.#meta(session, baseId), seq, unstored: report.reason };
      await this.store.putCheckpoint(session.id, { meta, delta: new Uint8Array() });
      d.seq = seq;
      d.chain = undefined;
      d.stored = true;
    } catch (err) {
      this.#log(`could not mark session ${session.id} as unstored: ${messageOf(err)}`);
    }
    return report;
  }

  /** Whether a checkpoint of the session is being written now. */
  writing(id: string): boolean {
    return this.#writes.has(id);
  }

  /** Resolves once every checkpoint of the session taken so far is written (or failed). */
  settled(id: string): Promise<void> {
    return (this.#writes.get(id) ?? Promise.resolve()).then(() => {});
  }

  /**
   * Stores a taken checkpoint: its memory as a new link, compacting the chain first when it is
   * long, then the metadata naming the chain with the description, in one replacement: a reader
   * sees the old chain or the new one. Links no chain names any more are removed after.
   */
  async #write(
    session: Session,
    interpreter: Interpreter,
    meta: TakenMeta,
    taken: Taken,
    started: number,
  ): Promise<CheckpointReport> {
    const d = session.durable;
    const size = taken.delta.byteLength + taken.bytes.byteLength;
    // On its way to the store, the checkpoint is the session's to carry (the watchdog counts it).
    const release = session.held.add(size);
    try {
      if (!taken.full && !d.chain) throw new Error("the checkpoint it builds on is not stored");
      const base = performance.now();
      await this.#storeBase(meta.baseId);
      const baseMs = performance.now() - base;
      const seq = d.seq + 1;
      const before = taken.full ? [] : d.chain!;
      // Moved to the sealing thread, not copied: nothing here reads the bytes again.
      const [compacted, link] = await Promise.all([
        this.#compact(session.id, before),
        this.store.putLink(session.id, String(seq), taken.delta, true),
      ]);
      const chain = [...compacted, link];
      const head = { meta: { ...meta, seq, chain }, delta: taken.bytes, handOver: true };
      await this.store.putCheckpoint(session.id, head);
      d.seq = seq;
      d.chain = chain;
      d.tip = { interpreter: new WeakRef(interpreter), generation: taken.generation };
      d.stored = true;
      d.failure = undefined;
      if (compacted !== before || taken.full) {
        await this.store.pruneLinks(session.id, chain.map((l) => l.name)).catch((err) =>
          this.#log(`could not remove old links of session ${session.id}: ${messageOf(err)}`)
        );
      }
      const ms = performance.now() - started;
      d.cost = ms - baseMs;
      const bytes = link.bytes + taken.bytes.byteLength;
      metrics.checkpoint(bytes, ms, true);
      return { ok: true, bytes, seq, ms: Math.round(ms * 10) / 10 };
    } catch (err) {
      // The next checkpoint starts a chain again: this one's link may be missing.
      d.tip = undefined;
      return this.#failed(session, err, size, started);
    } finally {
      release();
    }
  }

  /** `chain` with its links after the first merged when there are too many (see MAX_LINKS). */
  async #compact(id: string, chain: Link[]): Promise<Link[]> {
    if (chain.length <= MAX_LINKS) return chain;
    const [first, ...rest] = chain;
    const restBytes = rest.reduce((n, l) => n + l.bytes, 0);
    const parts = restBytes * 2 >= first.bytes ? chain : rest;
    const name = `${parts[0].name.split("-")[0]}-${parts.at(-1)!.name.split("-").at(-1)}`;
    const merged = await this.store.mergeLinks(id, parts, name);
    return parts === chain ? [merged] : [first, merged];
  }

  #failed(session: Session, err: unknown, bytes: number, started: number): CheckpointReport {
    const reason = `the session's checkpoint could not be stored: ${messageOf(err)}`;
    session.durable.failure = reason;
    metrics.checkpoint(bytes, performance.now() - started, false);
    logEvent("checkpoint", { session: session.id, ok: false, reason: messageOf(err) });
    return { ok: false, reason };
  }

  /** Stores a session that has no interpreter state yet (new, or ephemeral): `empty`. */
  async saveMeta(session: Session): Promise<void> {
    await this.settled(session.id);
    const seq = session.durable.seq + 1;
    await this.store.putCheckpoint(session.id, {
      meta: { ...this.#meta(session, await this.baseId), seq, empty: true },
      delta: new Uint8Array(),
    });
    session.durable.seq = seq;
    session.durable.stored = true;
    session.durable.chain = undefined;
  }

  /** What the store keeps beside a checkpoint, as the session is when its state is taken. */
  #meta(session: Session, baseId: string): TakenMeta {
    return {
      mode: session.mode,
      created: session.created,
      lastUsed: session.lastUsed,
      calls: session.calls,
      packages: [...session.packages],
      baseId,
      instance: this.instanceId,
      ...(session.authorizedImports ? { authorizedImports: session.authorizedImports } : {}),
      ...(session.owner ? { tenant: session.owner } : {}),
    };
  }

  /**
   * Reads a session's last checkpoint and its base. Throws SessionLostError when it is missing
   * or refused (a `security` event for the latter), StoreUnavailable when the store is down.
   */
  async load(id: string): Promise<Loaded> {
    for (let attempt = 1;; attempt++) {
      let found: Checkpoint | undefined;
      try {
        found = await this.store.getCheckpoint(id);
      } catch (err) {
        throw refused(id, err);
      }
      if (!found) {
        throw new SessionLostError(
          `Session '${id}' cannot be restored: the store holds no checkpoint of it, so its ` +
            `state is lost`,
        );
      }
      let links: Uint8Array<ArrayBuffer>[];
      try {
        links = (await Promise.all((found.meta.chain ?? []).map((l) => this.store.getLink(id, l))))
          .map(owned);
      } catch (err) {
        // A compaction on another instance may have replaced the chain since it was read.
        const replaced = err instanceof CheckpointRejected && err.reason === "missing" &&
          attempt < READ_ATTEMPTS &&
          (await this.store.getMeta(id).catch(() => undefined))?.seq !== found.meta.seq;
        if (replaced) continue;
        throw refused(id, err);
      }
      await this.baseId; // the server's base is in #bases once its id is hashed
      const baseId = found.meta.baseId;
      let base = this.#bases.get(baseId);
      if (!base) {
        base = await this.store.getBase(baseId);
        // Kept: this session's next checkpoints are deltas against it too.
        if (base) this.#bases.set(baseId, base);
      }
      if (!base) {
        throw new SessionLostError(
          `Session '${id}' cannot be restored: the boot snapshot its checkpoint refers to ` +
            `(${found.meta.baseId.slice(0, 12)}) is not in the store, so its state is lost`,
        );
      }
      // Unsealed bytes are this read's own: the restore moves them into the worker uncopied.
      return { meta: found.meta, checkpoint: owned(found.delta), links, base };
    }
  }

  /** Removes a session from the store (deleted or expired) and frees its lease. */
  async remove(session: Session): Promise<void> {
    // A write still under way would store the session again after it is gone.
    await this.settled(session.id);
    await this.store.deleteSession(session.id).catch((err) =>
      this.#log(`could not remove session ${session.id} from the store: ${messageOf(err)}`)
    );
    await this.release(session);
  }

  /** Stops renewing leases (the instance is stopping; it released them itself). */
  close(): void {
    clearInterval(this.#renewer);
  }
}

export { StoreUnavailable };
