/**
 * The session store: where a durable session's checkpoints, the boot snapshots they are deltas
 * against, and the leases that keep one runner per session live. `Store` is what callers use
 * (records sealed with the store key); `Backend` is what each backend file implements (bytes
 * only). `openStore` in `open.ts` picks the backend from `MOAT_STORE`.
 */
import { z } from "zod";

/**
 * One link of a session's chain: a memory delta against the image the links before it make (the
 * first: against the base). Named in the sealed metadata with its authentication tag, so a link
 * swapped for another (an older one of the same name) is refused.
 */
export const LinkSchema = z.object({
  name: z.string().min(1),
  /** Sealed size in the store. */
  bytes: z.number().int().min(0),
  /** The sealed link's AES-GCM tag, base64. */
  tag: z.string().min(1),
});

/** One link of a session's chain, as its metadata names it. */
export type Link = z.infer<typeof LinkSchema>;

/** Session metadata saved with each checkpoint; listed without the checkpoint's bytes. */
export const SessionMetaSchema = z.looseObject({
  /** `persistent` or `ephemeral` (only persistent sessions are checkpointed today). */
  mode: z.enum(["persistent", "ephemeral"]),
  /** Creation time, epoch milliseconds. */
  created: z.number(),
  /** Time of the last call, epoch milliseconds: the key for evicting least recently used. */
  lastUsed: z.number(),
  /** Calls run in the session so far. */
  calls: z.number().int().min(0),
  /** Packages loaded into the interpreter, to load again before a restore. */
  packages: z.array(z.string()),
  /** Increases with every checkpoint of the session, so a caller can tell newer from older. */
  seq: z.number().int().min(0),
  /** The content hash of the boot snapshot (`putBase`) the delta was taken against. */
  baseId: z.string().min(1),
  /**
   * The session's memory: links written over the base in order. Absent for a session with no
   * state yet, and in checkpoints written before chains (their one delta is in the body).
   */
  chain: z.array(LinkSchema).optional(),
});

/** Session metadata saved with each checkpoint (extra fields are kept as they are). */
export type SessionMeta = z.infer<typeof SessionMetaSchema>;

/**
 * One checkpoint: the metadata (naming the chain of memory links) and the interpreter's
 * description and files.
 */
export interface Checkpoint {
  meta: SessionMeta;
  /** Raw bytes (`checkpoint/format.ts`); the store compresses and encrypts them. */
  delta: Uint8Array;
  /**
   * On a put: the caller does not use `delta` again, so the store may move its buffer to the
   * thread that seals it instead of copying it (the caller's view is then empty).
   */
  handOver?: boolean;
}

/** A stored session as listed: its id and metadata, without the checkpoint's bytes. */
export interface StoredSession {
  id: string;
  meta: SessionMeta;
}

/** Who runs a session now, and for how much longer unless renewed. */
export interface LeaseInfo {
  instanceId: string;
  expiresInMs: number;
}

/** The backends `MOAT_STORE` can name. */
export type StoreKind = "memory" | "kv" | "redis";

/** Operations every store has whether or not records are sealed: leases, health, closing. */
export interface Leases {
  /** Which backend this is. */
  readonly kind: StoreKind;
  /** True when several server instances may share the store (so leases matter). */
  readonly shared: boolean;
  /**
   * Takes the session's lease for `ttlMs` if it is free, expired, or already `instanceId`'s (then
   * it is extended). Atomic compare-and-set: of two instances asking at once, one gets it.
   * @returns whether `instanceId` holds the lease now.
   */
  acquireLease(sessionId: string, instanceId: string, ttlMs: number): Promise<boolean>;
  /** Extends a lease `instanceId` still holds; false when it expired or someone else holds it. */
  renewLease(sessionId: string, instanceId: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up, only if `instanceId` holds it; returns whether it did. */
  releaseLease(sessionId: string, instanceId: string): Promise<boolean>;
  /** The current holder, or undefined when the lease is free or expired. */
  leaseHolder(sessionId: string): Promise<LeaseInfo | undefined>;
  /**
   * Takes the lease from `from`, an instance found dead (no heartbeat), for `to`: atomic, and only
   * while `from` still holds it, so of two instances taking over at once one gets it.
   */
  takeLease(sessionId: string, from: string, to: string, ttlMs: number): Promise<boolean>;
  /**
   * Writes an instance's heartbeat record (`src/cluster/instances.ts` signs it) for `ttlMs`: an
   * instance that stops writing it is gone from `getInstance` once that time is up.
   */
  putInstance(instanceId: string, record: string, ttlMs: number): Promise<void>;
  /** An instance's heartbeat record, or undefined when it expired or was never written. */
  getInstance(instanceId: string): Promise<string | undefined>;
  /** Every instance whose heartbeat has not expired. */
  listInstances(): Promise<{ id: string; record: string }[]>;
  /** Removes an instance's heartbeat record (it stops). */
  deleteInstance(instanceId: string): Promise<void>;
  /** Resolves when the store answers; rejects with `StoreUnavailable` otherwise (readiness). */
  ping(): Promise<void>;
  /** Releases connections and file handles; the store is unusable afterwards. */
  close(): Promise<void>;
}

/**
 * The session store callers use. Every method rejects with `StoreUnavailable` when the backend
 * cannot be reached (fast: never hangs), and reads reject with `CheckpointRejected` when a record
 * fails authentication or is damaged.
 */
export interface Store extends Leases {
  /**
   * Saves the session's checkpoint, replacing the previous one whole: a reader at any moment sees
   * the old checkpoint or the new one, never a mix.
   */
  putCheckpoint(sessionId: string, checkpoint: Checkpoint): Promise<void>;
  /** The session's last checkpoint, or undefined when the store has none. */
  getCheckpoint(sessionId: string): Promise<Checkpoint | undefined>;
  /** The metadata of the session's last checkpoint (not its bytes), or undefined. */
  getMeta(sessionId: string): Promise<SessionMeta | undefined>;
  /** Removes the session's checkpoint and links (not its lease: leases expire); whether it had one. */
  deleteSession(sessionId: string): Promise<boolean>;
  /**
   * Every stored session with its metadata (not its bytes), in no particular order; sort by
   * `meta.lastUsed` to evict least recently used. Entries that fail authentication are left out
   * and reported to the `onRejected` hook given to `openStore`.
   */
  listSessions(): Promise<StoredSession[]>;
  /** How many sessions the store holds, for `limits.storedSessions`. */
  countSessions(): Promise<number>;
  /** Whether a base (boot snapshot) with this content hash is stored. */
  hasBase(hash: string): Promise<boolean>;
  /**
   * Stores a base under its content hash (the caller's, e.g. hex SHA-256). Written once per hash:
   * a second put of the same hash is a no-op. The store compresses it.
   */
  putBase(hash: string, bytes: Uint8Array): Promise<void>;
  /** The base stored under `hash`, or undefined. */
  getBase(hash: string): Promise<Uint8Array | undefined>;
  /**
   * Stores one link of a session's chain (a memory delta) under `name`, which no other link of
   * the session has had; returns how the session's metadata names it. Nothing refers to it until
   * a checkpoint's metadata does. `handOver` as for a checkpoint.
   */
  putLink(sessionId: string, name: string, delta: Uint8Array, handOver?: boolean): Promise<Link>;
  /**
   * A link's delta; rejects with `CheckpointRejected` when it is missing ("truncated"), is not
   * the one the metadata names, or fails authentication.
   */
  getLink(sessionId: string, link: Link): Promise<Uint8Array>;
  /**
   * Merges `links` (in order) into one link named `name`, off the main thread: the chain's
   * compaction. The store keeps the old links until `pruneLinks`.
   */
  mergeLinks(sessionId: string, links: Link[], name: string): Promise<Link>;
  /** Removes every link of the session but those named in `keep`. */
  pruneLinks(sessionId: string, keep: string[]): Promise<void>;
}

/** A sealed checkpoint as a backend keeps it: the sealed metadata and the sealed body. */
export interface RawCheckpoint {
  meta: Uint8Array;
  body: Uint8Array;
}

/**
 * What a backend implements: opaque bytes, atomic replacement, leases. It knows nothing of keys
 * or formats; `sealed.ts` turns it into a `Store`.
 */
export interface Backend extends Leases {
  /**
   * Replaces the session's record atomically (meta and body together). Reads return fresh bytes
   * on every call, which the caller may keep or move to another thread; bytes given to a put are
   * the backend's from then on (it may move them to its own thread), never used by the caller.
   */
  putCheckpoint(sessionId: string, record: RawCheckpoint): Promise<void>;
  getCheckpoint(sessionId: string): Promise<RawCheckpoint | undefined>;
  /** The sealed metadata of the session's record alone. */
  getMeta(sessionId: string): Promise<Uint8Array | undefined>;
  deleteSession(sessionId: string): Promise<boolean>;
  /** Every session's sealed metadata. */
  listMeta(): Promise<{ id: string; meta: Uint8Array }[]>;
  countSessions(): Promise<number>;
  hasBase(hash: string): Promise<boolean>;
  /** Stores the bytes unless the hash is already stored (then it does nothing). */
  putBase(hash: string, bytes: Uint8Array): Promise<void>;
  getBase(hash: string): Promise<Uint8Array | undefined>;
  /** Stores a link of the session's chain (`deleteSession` removes them all). */
  putLink(sessionId: string, name: string, bytes: Uint8Array): Promise<void>;
  getLink(sessionId: string, name: string): Promise<Uint8Array | undefined>;
  /** Removes every link of the session not named in `keep`. */
  deleteLinks(sessionId: string, keep: string[]): Promise<void>;
}

export { StoreUnavailable } from "./unavailable.ts";
export { CheckpointRejected, type RejectReason } from "../codec/rejected.ts";
