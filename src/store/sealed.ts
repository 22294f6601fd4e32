/**
 * Turns a backend of opaque bytes into the `Store` callers use: every checkpoint, its metadata
 * and every base is sealed (`crypto.ts`) on the way in and authenticated on the way out. A
 * checkpoint's body is bound to its own sealed metadata, so neither can be swapped for another's.
 */
import type { RecordKind, StoreKey } from "../codec/crypto.ts";
import { type Sealer, sealerInThread } from "../codec/sealer.ts";
import {
  type Backend,
  type Checkpoint,
  CheckpointRejected,
  type Link,
  type SessionMeta,
  SessionMetaSchema,
  type Store,
  type StoredSession,
} from "./store.ts";

/** Options of `sealedStore`. */
export interface SealedOptions {
  /** Told about every listed record that failed authentication (for the `security` audit log). */
  onRejected?: (err: CheckpointRejected) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function openMeta(sealer: Sealer, id: string, sealed: Uint8Array): Promise<SessionMeta> {
  const json = await sealer.unseal("meta", id, sealed);
  const parsed = SessionMetaSchema.safeParse(parseJson(json));
  if (!parsed.success) {
    throw new CheckpointRejected("corrupt", `meta ${id}`, parsed.error.issues[0].message);
  }
  return parsed.data;
}

/** A sealed record's AES-GCM tag (its last 16 bytes), base64: what the metadata binds a link by. */
function tagOf(sealed: Uint8Array): string {
  return btoa(String.fromCharCode(...sealed.subarray(sealed.byteLength - 16)));
}

/** A link is sealed under its session and name, so it cannot stand in for another. */
function linkName(id: string, name: string): string {
  return `${id}/${name}`;
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
}

/**
 * A `Store` whose records are sealed by `sealer` (or in this thread under `key`) and kept by
 * `backend`. Closing the store closes the sealer.
 */
export function sealedStore(
  backend: Backend,
  sealerOrKey: Sealer | StoreKey,
  options: SealedOptions = {},
): Store {
  const sealer = "master" in sealerOrKey ? sealerInThread(sealerOrKey) : sealerOrKey;
  /** A link's sealed bytes, checked to be the very one the metadata names. */
  const sealedLink = async (id: string, link: Link): Promise<Uint8Array> => {
    const sealed = await backend.getLink(id, link.name);
    const record = `link ${linkName(id, link.name)}`;
    if (!sealed) throw new CheckpointRejected("missing", record, "a link of its chain is missing");
    if (sealed.byteLength < 16 || tagOf(sealed) !== link.tag) {
      throw new CheckpointRejected("tampered", record, "it is not the link its checkpoint names");
    }
    return sealed;
  };
  const sealAs = (
    kind: RecordKind,
    name: string,
    bytes: Uint8Array,
    extra?: Uint8Array,
    handOver = false,
  ) => sealer.seal(kind, name, bytes, { extra, compress: kind !== "meta", handOver });
  return {
    kind: backend.kind,
    shared: backend.shared,
    async putCheckpoint(id: string, checkpoint: Checkpoint): Promise<void> {
      const meta = await sealAs("meta", id, encoder.encode(JSON.stringify(checkpoint.meta)));
      const body = await sealAs("checkpoint", id, checkpoint.delta, meta, checkpoint.handOver);
      await backend.putCheckpoint(id, { meta, body });
    },
    async getCheckpoint(id: string): Promise<Checkpoint | undefined> {
      const raw = await backend.getCheckpoint(id);
      if (!raw) return undefined;
      const meta = await openMeta(sealer, id, raw.meta);
      const delta = await sealer.unseal("checkpoint", id, raw.body, { extra: raw.meta });
      return { meta, delta };
    },
    async getMeta(id: string): Promise<SessionMeta | undefined> {
      const meta = await backend.getMeta(id);
      return meta && await openMeta(sealer, id, meta);
    },
    deleteSession: (id) => backend.deleteSession(id),
    async listSessions(): Promise<StoredSession[]> {
      const sessions: StoredSession[] = [];
      for (const { id, meta } of await backend.listMeta()) {
        try {
          sessions.push({ id, meta: await openMeta(sealer, id, meta) });
        } catch (err) {
          if (!(err instanceof CheckpointRejected)) throw err;
          options.onRejected?.(err);
        }
      }
      return sessions;
    },
    countSessions: () => backend.countSessions(),
    hasBase: (hash) => backend.hasBase(hash),
    async putBase(hash: string, bytes: Uint8Array): Promise<void> {
      if (await backend.hasBase(hash)) return;
      await backend.putBase(hash, await sealAs("base", hash, bytes));
    },
    async getBase(hash: string): Promise<Uint8Array | undefined> {
      const sealed = await backend.getBase(hash);
      return sealed && await sealer.unseal("base", hash, sealed);
    },
    async putLink(id: string, name: string, delta: Uint8Array, handOver = false): Promise<Link> {
      const sealed = await sealAs("link", linkName(id, name), delta, undefined, handOver);
      // Named before the put: the backend may move the bytes to its own thread.
      const link = { name, bytes: sealed.byteLength, tag: tagOf(sealed) };
      await backend.putLink(id, name, sealed);
      return link;
    },
    async getLink(id: string, link: Link): Promise<Uint8Array> {
      return await sealer.unseal("link", linkName(id, link.name), await sealedLink(id, link));
    },
    async mergeLinks(id: string, links: Link[], name: string): Promise<Link> {
      const sealed = await Promise.all(links.map((link) => sealedLink(id, link)));
      const merged = await sealer.merge(
        "link",
        links.map((link) => linkName(id, link.name)),
        sealed,
        linkName(id, name),
      );
      const link = { name, bytes: merged.byteLength, tag: tagOf(merged) };
      await backend.putLink(id, name, merged);
      return link;
    },
    pruneLinks: (id, keep) => backend.deleteLinks(id, keep),
    acquireLease: (id, instance, ttlMs) => backend.acquireLease(id, instance, ttlMs),
    renewLease: (id, instance, ttlMs) => backend.renewLease(id, instance, ttlMs),
    releaseLease: (id, instance) => backend.releaseLease(id, instance),
    leaseHolder: (id) => backend.leaseHolder(id),
    takeLease: (id, from, to, ttlMs) => backend.takeLease(id, from, to, ttlMs),
    putInstance: (id, record, ttlMs) => backend.putInstance(id, record, ttlMs),
    getInstance: (id) => backend.getInstance(id),
    listInstances: () => backend.listInstances(),
    deleteInstance: (id) => backend.deleteInstance(id),
    ping: () => backend.ping(),
    close: () => {
      sealer.close();
      return backend.close();
    },
  };
}
