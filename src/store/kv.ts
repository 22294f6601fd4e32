/**
 * The `kv` backend: Deno KV in one SQLite file (the single-machine default, under `.moat-cache/`).
 *
 * KV values are limited to 64 KiB and an atomic operation to 800 KiB, so a record is cut into
 * chunks stored under a fresh version, and only then does a manifest naming that version become
 * the record, in one compare-and-set. A reader follows the manifest it read; if the record was
 * replaced under it (its chunks removed), it starts again from the new manifest, so it returns
 * the old record or the new one, never a mix. A marker per write in progress lets a later write
 * remove the chunks of one that crashed.
 */
import { CheckpointRejected } from "../codec/rejected.ts";
import type { Backend, LeaseInfo, RawCheckpoint } from "./store.ts";
import { StoreUnavailable } from "./unavailable.ts";

const CHUNK = 60_000;
/** 12 chunks of 60 kB stay under KV's 800 KiB per atomic operation. */
const PER_ATOMIC = 12;
/** A write whose marker is this old crashed; its chunks can go. */
const STALE_MS = 3_600_000;
const READ_ATTEMPTS = 5;
const LOCKED_RETRIES = 40;

/** Where a record lives: `["cp", id]`, `["base", hash]` or `["link", id, name]`. */
type Where = [kind: "cp" | "base", name: string] | [kind: "link", id: string, name: string];

interface Manifest {
  v: string;
  n: number;
  size: number;
  meta?: Uint8Array;
}

interface Lease {
  holder: string;
  expires: number;
}

/** An instance's heartbeat record, with the time it expires. */
interface Beat {
  record: string;
  expires: number;
}

/** A backend in a Deno KV file; several processes on one machine may open the same file. */
export class KvBackend implements Backend {
  readonly kind = "kv" as const;
  readonly shared = false;

  private constructor(readonly path: string, private kv: Deno.Kv, private prefix: string) {}

  /**
   * Opens (creating) the KV file at `path`; keys go under `prefix`. Without a path, the database
   * the platform gives (`Deno.openKv()`: on Deno Deploy, the app's database for this timeline).
   */
  static async open(path: string | undefined, prefix: string): Promise<KvBackend> {
    const where = path ?? "(the platform's database)";
    try {
      return new KvBackend(where, await Deno.openKv(path), prefix);
    } catch (err) {
      throw new StoreUnavailable(`Cannot open the Deno KV ${where}: ${(err as Error).message}`);
    }
  }

  /**
   * Runs one operation, turning failures into `StoreUnavailable`. SQLite refuses a write while
   * another connection (another process on this machine) commits: such an operation is retried
   * for up to about two seconds.
   */
  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0;; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof CheckpointRejected || err instanceof StoreUnavailable) throw err;
        if (!/database is locked|busy/i.test(String(err)) || attempt >= LOCKED_RETRIES) {
          throw this.#unavailable(what, err);
        }
        await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * Math.min(attempt + 1, 5)));
      }
    }
  }

  #unavailable(what: string, err: unknown): StoreUnavailable {
    const message = `Deno KV ${this.path}: ${what} failed: ${(err as Error).message}`;
    return new StoreUnavailable(message, { cause: err });
  }

  #manifestKey(where: Where): Deno.KvKey {
    return [this.prefix, ...where];
  }

  #chunkKey(where: Where, v: string, i: number): Deno.KvKey {
    return [this.prefix, `${where[0]}c`, ...where.slice(1), v, i];
  }

  #label(where: Where): string {
    return where[0] === "cp" ? `checkpoint ${where[1]}` : where.join(" ");
  }

  async #deleteKeys(keys: Deno.KvKey[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 500) {
      const op = this.kv.atomic();
      for (const key of keys.slice(i, i + 500)) op.delete(key);
      await op.commit();
    }
  }

  #chunkKeys(where: Where, m: Manifest): Deno.KvKey[] {
    return Array.from({ length: m.n }, (_, i) => this.#chunkKey(where, m.v, i));
  }

  /** Writes chunks under a new version, then swaps the manifest; returns false if kept the old. */
  async #write(where: Where, bytes: Uint8Array, meta?: Uint8Array, once = false) {
    const v = `${Date.now().toString(36)}.${crypto.randomUUID()}`;
    const pending: Deno.KvKey = [this.prefix, "pending", ...where, v];
    await this.kv.set(pending, Date.now());
    const manifest: Manifest = {
      v,
      n: Math.ceil(bytes.byteLength / CHUNK),
      size: bytes.byteLength,
    };
    if (meta) manifest.meta = meta;
    for (let i = 0; i < manifest.n; i += PER_ATOMIC) {
      const op = this.kv.atomic();
      for (let j = i; j < Math.min(i + PER_ATOMIC, manifest.n); j++) {
        op.set(this.#chunkKey(where, v, j), bytes.subarray(j * CHUNK, (j + 1) * CHUNK));
      }
      await op.commit();
    }
    const key = this.#manifestKey(where);
    let old: Deno.KvEntryMaybe<Manifest>;
    let kept = false;
    for (;;) {
      old = await this.kv.get<Manifest>(key);
      if (once && old.value) {
        kept = true;
        break;
      }
      if ((await this.kv.atomic().check(old).set(key, manifest).commit()).ok) break;
    }
    const garbage = kept ? this.#chunkKeys(where, manifest) : [];
    if (!kept && old.value) garbage.push(...this.#chunkKeys(where, old.value));
    await this.#deleteKeys([...garbage, pending]);
    await this.#sweep(where);
  }

  /** Removes the chunks of writes to this record that crashed long ago. */
  async #sweep(where: Where): Promise<void> {
    const stale = Date.now() - STALE_MS;
    for await (
      const marker of this.kv.list<number>({ prefix: [this.prefix, "pending", ...where] })
    ) {
      if (marker.value > stale || marker.key.length !== where.length + 3) continue;
      const v = marker.key[marker.key.length - 1] as string;
      const keys: Deno.KvKey[] = [marker.key];
      const chunks = [this.prefix, `${where[0]}c`, ...where.slice(1), v];
      for await (const c of this.kv.list({ prefix: chunks })) keys.push(c.key);
      await this.#deleteKeys(keys);
    }
  }

  /** Reads a record whole, following a replaced manifest to the new one. */
  async #read(where: Where): Promise<{ manifest: Manifest; bytes: Uint8Array } | undefined> {
    const key = this.#manifestKey(where);
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const entry = await this.kv.get<Manifest>(key);
      if (!entry.value) return undefined;
      const keys = this.#chunkKeys(where, entry.value);
      if (!(entry.value.size >= 0 && entry.value.size <= keys.length * CHUNK)) {
        throw new CheckpointRejected("corrupt", this.#label(where), "its manifest does not add up");
      }
      // Copied in as the chunks arrive, a few at a time between reads: one copy of a big record
      // at the end would hold the thread that serves HTTP.
      const bytes = new Uint8Array(entry.value.size);
      let at = 0;
      let found = 0;
      for (let i = 0; i < keys.length; i += 10) {
        for (const c of await this.kv.getMany<Uint8Array[]>(keys.slice(i, i + 10))) {
          if (!c.value || at + c.value.byteLength > bytes.byteLength) continue;
          bytes.set(c.value, at);
          at += c.value.byteLength;
          found++;
        }
      }
      if (found === keys.length && at === entry.value.size) {
        return { manifest: entry.value, bytes };
      }
      if ((await this.kv.get(key)).versionstamp === entry.versionstamp) {
        throw new CheckpointRejected(
          "truncated",
          this.#label(where),
          "some of its chunks are missing",
        );
      }
    }
    throw new StoreUnavailable(
      `Deno KV ${this.path}: ${this.#label(where)} kept changing while being read`,
    );
  }

  putCheckpoint(id: string, record: RawCheckpoint): Promise<void> {
    return this.#run("putCheckpoint", () => this.#write(["cp", id], record.body, record.meta));
  }

  getCheckpoint(id: string): Promise<RawCheckpoint | undefined> {
    return this.#run("getCheckpoint", async () => {
      const found = await this.#read(["cp", id]);
      return found && { meta: found.manifest.meta ?? new Uint8Array(), body: found.bytes };
    });
  }

  getMeta(id: string): Promise<Uint8Array | undefined> {
    return this.#run("getMeta", async () => {
      const entry = await this.kv.get<Manifest>(this.#manifestKey(["cp", id]));
      return entry.value ? entry.value.meta ?? new Uint8Array() : undefined;
    });
  }

  deleteSession(id: string): Promise<boolean> {
    return this.#run("deleteSession", async () => {
      const key = this.#manifestKey(["cp", id]);
      for (;;) {
        const old = await this.kv.get<Manifest>(key);
        if (!old.value) {
          await this.#deleteLinks(id, []);
          return false;
        }
        if ((await this.kv.atomic().check(old).delete(key).commit()).ok) {
          await this.#deleteKeys(this.#chunkKeys(["cp", id], old.value));
          await this.#deleteLinks(id, []);
          return true;
        }
      }
    });
  }

  putLink(id: string, name: string, bytes: Uint8Array): Promise<void> {
    return this.#run("putLink", () => this.#write(["link", id, name], bytes));
  }

  getLink(id: string, name: string): Promise<Uint8Array | undefined> {
    return this.#run("getLink", async () => (await this.#read(["link", id, name]))?.bytes);
  }

  deleteLinks(id: string, keep: string[]): Promise<void> {
    return this.#run("deleteLinks", () => this.#deleteLinks(id, keep));
  }

  async #deleteLinks(id: string, keep: string[]): Promise<void> {
    for await (const e of this.kv.list<Manifest>({ prefix: [this.prefix, "link", id] })) {
      const name = String(e.key[3]);
      if (keep.includes(name)) continue;
      const where: Where = ["link", id, name];
      await this.#deleteKeys([e.key, ...this.#chunkKeys(where, e.value)]);
    }
  }

  listMeta(): Promise<{ id: string; meta: Uint8Array }[]> {
    return this.#run("listSessions", async () => {
      const out: { id: string; meta: Uint8Array }[] = [];
      for await (const e of this.kv.list<Manifest>({ prefix: [this.prefix, "cp"] })) {
        out.push({ id: String(e.key[2]), meta: e.value.meta ?? new Uint8Array() });
      }
      return out;
    });
  }

  countSessions(): Promise<number> {
    return this.#run("countSessions", async () => (await this.listMeta()).length);
  }

  hasBase(hash: string): Promise<boolean> {
    return this.#run("hasBase", async () => {
      return (await this.kv.get(this.#manifestKey(["base", hash]))).value !== null;
    });
  }

  putBase(hash: string, bytes: Uint8Array): Promise<void> {
    return this.#run("putBase", () => this.#write(["base", hash], bytes, undefined, true));
  }

  getBase(hash: string): Promise<Uint8Array | undefined> {
    return this.#run("getBase", async () => (await this.#read(["base", hash]))?.bytes);
  }

  /** Sets the lease to `holder` when `allowed` says so of the current one, atomically. */
  #lease(id: string, allowed: (lease: Lease | undefined) => boolean, next?: Lease) {
    return this.#run("lease", async () => {
      const key: Deno.KvKey = [this.prefix, "lease", id];
      for (;;) {
        const entry = await this.kv.get<Lease>(key);
        const live = entry.value && entry.value.expires > Date.now() ? entry.value : undefined;
        if (!allowed(live)) return false;
        const op = this.kv.atomic().check(entry);
        if (next) op.set(key, next, { expireIn: next.expires - Date.now() + STALE_MS });
        else op.delete(key);
        if ((await op.commit()).ok) return true;
      }
    });
  }

  acquireLease(id: string, instanceId: string, ttlMs: number): Promise<boolean> {
    const next = { holder: instanceId, expires: Date.now() + ttlMs };
    return this.#lease(id, (l) => !l || l.holder === instanceId, next);
  }

  renewLease(id: string, instanceId: string, ttlMs: number): Promise<boolean> {
    const next = { holder: instanceId, expires: Date.now() + ttlMs };
    return this.#lease(id, (l) => l?.holder === instanceId, next);
  }

  releaseLease(id: string, instanceId: string): Promise<boolean> {
    return this.#lease(id, (l) => l?.holder === instanceId);
  }

  takeLease(id: string, from: string, to: string, ttlMs: number): Promise<boolean> {
    const next = { holder: to, expires: Date.now() + ttlMs };
    return this.#lease(id, (l) => l?.holder === from, next);
  }

  putInstance(id: string, record: string, ttlMs: number): Promise<void> {
    return this.#run("putInstance", async () => {
      const value: Beat = { record, expires: Date.now() + ttlMs };
      // KV deletes expired keys lazily: the time in the value is what readers check.
      await this.kv.set([this.prefix, "instance", id], value, { expireIn: ttlMs + STALE_MS });
    });
  }

  getInstance(id: string): Promise<string | undefined> {
    return this.#run("getInstance", async () => {
      const beat = (await this.kv.get<Beat>([this.prefix, "instance", id])).value;
      return beat && beat.expires > Date.now() ? beat.record : undefined;
    });
  }

  listInstances(): Promise<{ id: string; record: string }[]> {
    return this.#run("listInstances", async () => {
      const found: { id: string; record: string }[] = [];
      const now = Date.now();
      for await (const e of this.kv.list<Beat>({ prefix: [this.prefix, "instance"] })) {
        if (e.value.expires > now) found.push({ id: String(e.key[2]), record: e.value.record });
      }
      return found;
    });
  }

  deleteInstance(id: string): Promise<void> {
    return this.#run("deleteInstance", () => this.kv.delete([this.prefix, "instance", id]));
  }

  leaseHolder(id: string): Promise<LeaseInfo | undefined> {
    return this.#run("leaseHolder", async () => {
      const lease = (await this.kv.get<Lease>([this.prefix, "lease", id])).value;
      const left = lease ? lease.expires - Date.now() : 0;
      return lease && left > 0 ? { instanceId: lease.holder, expiresInMs: left } : undefined;
    });
  }

  ping(): Promise<void> {
    return this.#run("ping", async () => void await this.kv.get([this.prefix, "ping"]));
  }

  close(): Promise<void> {
    this.kv.close();
    return Promise.resolve();
  }
}
