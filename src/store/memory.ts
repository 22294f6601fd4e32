/**
 * The `memory` backend: today's behaviour, nothing survives a restart. Useful for tests and for
 * deployments that do not want durable sessions; leases only matter within this process.
 */
import type { Backend, LeaseInfo, RawCheckpoint } from "./store.ts";

/** A backend in this process's memory; each instance is its own empty store. */
export class MemoryBackend implements Backend {
  readonly kind = "memory" as const;
  readonly shared = false;
  #checkpoints = new Map<string, RawCheckpoint>();
  #bases = new Map<string, Uint8Array>();
  #links = new Map<string, Map<string, Uint8Array>>();
  #leases = new Map<string, { holder: string; expires: number }>();
  #instances = new Map<string, { record: string; expires: number }>();

  putCheckpoint(id: string, record: RawCheckpoint): Promise<void> {
    this.#checkpoints.set(id, { meta: record.meta.slice(), body: record.body.slice() });
    return Promise.resolve();
  }

  getCheckpoint(id: string): Promise<RawCheckpoint | undefined> {
    const record = this.#checkpoints.get(id);
    return Promise.resolve(record && { meta: record.meta.slice(), body: record.body.slice() });
  }

  getMeta(id: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#checkpoints.get(id)?.meta.slice());
  }

  deleteSession(id: string): Promise<boolean> {
    this.#links.delete(id);
    return Promise.resolve(this.#checkpoints.delete(id));
  }

  putLink(id: string, name: string, bytes: Uint8Array): Promise<void> {
    let links = this.#links.get(id);
    if (!links) this.#links.set(id, links = new Map());
    links.set(name, bytes.slice());
    return Promise.resolve();
  }

  getLink(id: string, name: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#links.get(id)?.get(name)?.slice());
  }

  deleteLinks(id: string, keep: string[]): Promise<void> {
    const links = this.#links.get(id);
    for (const name of links?.keys() ?? []) if (!keep.includes(name)) links!.delete(name);
    return Promise.resolve();
  }

  listMeta(): Promise<{ id: string; meta: Uint8Array }[]> {
    return Promise.resolve([...this.#checkpoints].map(([id, r]) => ({ id, meta: r.meta.slice() })));
  }

  countSessions(): Promise<number> {
    return Promise.resolve(this.#checkpoints.size);
  }

  hasBase(hash: string): Promise<boolean> {
    return Promise.resolve(this.#bases.has(hash));
  }

  putBase(hash: string, bytes: Uint8Array): Promise<void> {
    if (!this.#bases.has(hash)) this.#bases.set(hash, bytes.slice());
    return Promise.resolve();
  }

  getBase(hash: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#bases.get(hash)?.slice());
  }

  #live(id: string): { holder: string; expires: number } | undefined {
    const lease = this.#leases.get(id);
    return lease && lease.expires > Date.now() ? lease : undefined;
  }

  acquireLease(id: string, instanceId: string, ttlMs: number): Promise<boolean> {
    const lease = this.#live(id);
    if (lease && lease.holder !== instanceId) return Promise.resolve(false);
    this.#leases.set(id, { holder: instanceId, expires: Date.now() + ttlMs });
    return Promise.resolve(true);
  }

  renewLease(id: string, instanceId: string, ttlMs: number): Promise<boolean> {
    if (this.#live(id)?.holder !== instanceId) return Promise.resolve(false);
    this.#leases.set(id, { holder: instanceId, expires: Date.now() + ttlMs });
    return Promise.resolve(true);
  }

  releaseLease(id: string, instanceId: string): Promise<boolean> {
    if (this.#live(id)?.holder !== instanceId) return Promise.resolve(false);
    return Promise.resolve(this.#leases.delete(id));
  }

  takeLease(id: string, from: string, to: string, ttlMs: number): Promise<boolean> {
    if (this.#live(id)?.holder !== from) return Promise.resolve(false);
    this.#leases.set(id, { holder: to, expires: Date.now() + ttlMs });
    return Promise.resolve(true);
  }

  putInstance(id: string, record: string, ttlMs: number): Promise<void> {
    this.#instances.set(id, { record, expires: Date.now() + ttlMs });
    return Promise.resolve();
  }

  getInstance(id: string): Promise<string | undefined> {
    const found = this.#instances.get(id);
    return Promise.resolve(found && found.expires > Date.now() ? found.record : undefined);
  }

  listInstances(): Promise<{ id: string; record: string }[]> {
    const now = Date.now();
    return Promise.resolve(
      [...this.#instances].filter(([, v]) => v.expires > now).map(([id, v]) => ({
        id,
        record: v.record,
      })),
    );
  }

  deleteInstance(id: string): Promise<void> {
    this.#instances.delete(id);
    return Promise.resolve();
  }

  leaseHolder(id: string): Promise<LeaseInfo | undefined> {
    const lease = this.#live(id);
    return Promise.resolve(
      lease && { instanceId: lease.holder, expiresInMs: lease.expires - Date.now() },
    );
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
