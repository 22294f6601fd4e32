/**
 * The `redis://` backend: one Redis shared by several Moat instances (node-redis, pinned).
 *
 * Keys, all under `MOAT_STORE_PREFIX` (`<prefix>:`): `cp:<id>` (a hash: the sealed metadata and
 * body), `links:<id>` (a hash: link name → sealed memory delta), `meta` (a hash: session id →
 * sealed metadata, for listing), `base:<hash>`, `lease:<id>`
 * (the holder's instance id, expiring with PX), `instance:<id>` (an instance's signed heartbeat,
 * expiring with PX). A checkpoint is written in one MULTI transaction
 * and read with one HMGET, so a reader sees one checkpoint whole. Leases are compare-and-set
 * scripts.
 *
 * Redis down never hangs a caller: commands are not queued while disconnected (they reject at
 * once), every operation has a deadline, and the client keeps reconnecting in the background.
 */
import { createClient, RESP_TYPES } from "@redis/client";
import { Buffer } from "node:buffer";
import type { Backend, LeaseInfo, RawCheckpoint } from "./store.ts";
import { StoreUnavailable } from "./store.ts";

/** Options of `RedisBackend.open`. */
export interface RedisOptions {
  /** `redis://[:password@]host:port/db` (or `rediss://` for TLS). */
  url: string;
  /** Key prefix (`MOAT_STORE_PREFIX`), so deployments can share one Redis. */
  prefix: string;
  /** Deadline of one operation before it rejects with `StoreUnavailable`. @default {2000} */
  opTimeoutMs?: number;
  /** Told when the connection is lost and when it comes back. */
  log?: (line: string) => void;
}

const ACQUIRE = `local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then
return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
const TAKE = `if redis.call('GET', KEYS[1]) == ARGV[1] then
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

function makeClient(url: string) {
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2000,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000),
    },
  });
}

function bytes(value: unknown): Uint8Array | undefined {
  if (value === null || value === undefined) return undefined;
  const b = value as Buffer;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A backend in a Redis server, shared by every instance configured with the same prefix. */
export class RedisBackend implements Backend {
  readonly kind = "redis" as const;
  readonly shared = true;
  #client: ReturnType<typeof makeClient>;
  #prefix: string;
  #timeoutMs: number;
  #where: string;
  #down = false;
  /** Connected, but an operation got no answer: operations fail at once until a ping answers. */
  #stalled = false;
  #probe?: ReturnType<typeof setTimeout>;
  #closed = false;
  #log: (line: string) => void;

  private constructor(options: RedisOptions) {
    this.#client = makeClient(options.url);
    this.#prefix = `${options.prefix}:`;
    this.#timeoutMs = options.opTimeoutMs ?? 2000;
    const url = new URL(options.url);
    this.#where = `Redis at ${url.host}`;
    const log = this.#log = options.log ?? (() => {});
    this.#client.on("error", (err: Error) => {
      if (!this.#down) log(`session store: ${this.#where} unreachable (${err.message}); retrying`);
      this.#down = true;
    });
    this.#client.on("ready", () => {
      if (this.#down) log(`session store: ${this.#where} reachable again`);
      this.#down = false;
    });
  }

  /**
   * Connects, waiting at most one operation deadline: when Redis is not up yet the backend is
   * returned anyway, rejects operations with `StoreUnavailable`, and connects when Redis comes.
   */
  static async open(options: RedisOptions): Promise<RedisBackend> {
    const backend = new RedisBackend(options);
    const connected = backend.#client.connect().then(() => true, () => false);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) =>
      timer = setTimeout(() => r(false), backend.#timeoutMs)
    );
    await Promise.race([connected, late]);
    clearTimeout(timer);
    return backend;
  }

  get #bin() {
    return this.#client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  }

  #key(...parts: string[]): string {
    return this.#prefix + parts.join(":");
  }

  /**
   * Runs one operation with a deadline, turning every failure into `StoreUnavailable`. While
   * Redis hangs (connected, not answering), operations fail at once instead of each waiting out
   * the deadline, and a ping every second finds out when it answers again.
   */
  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (!this.#client.isReady) {
      throw new StoreUnavailable(`${this.#where}: ${what}: not connected (reconnecting)`);
    }
    if (this.#stalled) {
      throw new StoreUnavailable(
        `${this.#where}: ${what}: not answering (no answer in ${this.#timeoutMs} ms)`,
      );
    }
    try {
      return await this.#deadline(what, fn());
    } catch (err) {
      if (err instanceof StoreUnavailable) {
        this.#stall();
        throw err;
      }
      throw new StoreUnavailable(`${this.#where}: ${what}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async #deadline<T>(what: string, work: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreUnavailable(`${this.#where}: ${what}: no answer in ${this.#timeoutMs} ms`),
          ),
        this.#timeoutMs,
      );
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  #stall(): void {
    if (this.#stalled) return;
    this.#stalled = true;
    this.#log(
      `session store: ${this.#where} does not answer; operations fail at once until it does`,
    );
    const probe = async () => {
      try {
        await this.#deadline("ping", this.#client.ping());
        this.#stalled = false;
        this.#probe = undefined;
        this.#log(`session store: ${this.#where} answers again`);
      } catch {
        if (this.#closed) return;
        this.#probe = setTimeout(probe, 1000);
        Deno.unrefTimer(this.#probe);
      }
    };
    probe();
  }

  putCheckpoint(id: string, record: RawCheckpoint): Promise<void> {
    return this.#run("putCheckpoint", async () => {
      const meta = Buffer.from(record.meta);
      await this.#client.multi()
        .hSet(this.#key("cp", id), { meta, body: Buffer.from(record.body) })
        .hSet(this.#key("meta"), id, meta)
        .exec();
    });
  }

  getCheckpoint(id: string): Promise<RawCheckpoint | undefined> {
    return this.#run("getCheckpoint", async () => {
      // One command, so one snapshot (replies inside MULTI lose the binary type mapping).
      const [meta, body] = await this.#bin.hmGet(this.#key("cp", id), ["meta", "body"]);
      const m = bytes(meta);
      return m && { meta: m, body: bytes(body) ?? new Uint8Array() };
    });
  }

  getMeta(id: string): Promise<Uint8Array | undefined> {
    return this.#run("getMeta", async () => {
      const [meta] = await this.#bin.hmGet(this.#key("cp", id), ["meta"]);
      return bytes(meta);
    });
  }

  deleteSession(id: string): Promise<boolean> {
    return this.#run("deleteSession", async () => {
      const [removed] = await this.#client.multi()
        .del(this.#key("cp", id))
        .hDel(this.#key("meta"), id)
        .del(this.#key("links", id))
        .exec();
      return Number(removed) > 0;
    });
  }

  putLink(id: string, name: string, value: Uint8Array): Promise<void> {
    return this.#run("putLink", async () => {
      await this.#client.hSet(this.#key("links", id), name, Buffer.from(value));
    });
  }

  getLink(id: string, name: string): Promise<Uint8Array | undefined> {
    return this.#run(
      "getLink",
      async () => bytes(await this.#bin.hGet(this.#key("links", id), name)),
    );
  }

  deleteLinks(id: string, keep: string[]): Promise<void> {
    return this.#run("deleteLinks", async () => {
      const names = await this.#client.hKeys(this.#key("links", id));
      const gone = names.filter((name) => !keep.includes(name));
      if (gone.length) await this.#client.hDel(this.#key("links", id), gone);
    });
  }

  listMeta(): Promise<{ id: string; meta: Uint8Array }[]> {
    return this.#run("listSessions", async () => {
      const out: { id: string; meta: Uint8Array }[] = [];
      const typed = this.#client.withTypeMapping({
        [RESP_TYPES.BLOB_STRING]: Buffer,
        [RESP_TYPES.MAP]: Array,
      });
      const flat = await typed.hGetAll(this.#key("meta")) as unknown as Buffer[];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        out.push({ id: flat[i].toString("utf8"), meta: bytes(flat[i + 1])! });
      }
      return out;
    });
  }

  countSessions(): Promise<number> {
    return this.#run("countSessions", () => this.#client.hLen(this.#key("meta")));
  }

  hasBase(hash: string): Promise<boolean> {
    return this.#run(
      "hasBase",
      async () => (await this.#client.exists(this.#key("base", hash))) > 0,
    );
  }

  putBase(hash: string, value: Uint8Array): Promise<void> {
    return this.#run("putBase", async () => {
      await this.#client.set(this.#key("base", hash), Buffer.from(value), { condition: "NX" });
    });
  }

  getBase(hash: string): Promise<Uint8Array | undefined> {
    return this.#run("getBase", async () => bytes(await this.#bin.get(this.#key("base", hash))));
  }

  #script(what: string, script: string, id: string, args: string[]): Promise<boolean> {
    return this.#run(what, async () => {
      const reply = await this.#client.eval(script, {
        keys: [this.#key("lease", id)],
        arguments: args,
      });
      return Number(reply) === 1;
    });
  }

  acquireLease(id: string, instanceId: string, ttlMs: number): Promise<boolean> {
    return this.#script("acquireLease", ACQUIRE, id, [instanceId, String(Math.ceil(ttlMs))]);
  }

  renewLease(id: string, instanceId: string, ttlMs: number): Promise<boolean> {
    return this.#script("renewLease", RENEW, id, [instanceId, String(Math.ceil(ttlMs))]);
  }

  releaseLease(id: string, instanceId: string): Promise<boolean> {
    return this.#script("releaseLease", RELEASE, id, [instanceId]);
  }

  takeLease(id: string, from: string, to: string, ttlMs: number): Promise<boolean> {
    return this.#script("takeLease", TAKE, id, [from, to, String(Math.ceil(ttlMs))]);
  }

  putInstance(id: string, record: string, ttlMs: number): Promise<void> {
    return this.#run("putInstance", async () => {
      await this.#client.set(this.#key("instance", id), record, {
        expiration: {
          type: "PX",
          value: Math.ceil(ttlMs),
        },
      });
    });
  }

  getInstance(id: string): Promise<string | undefined> {
    return this.#run("getInstance", async () => {
      return (await this.#client.get(this.#key("instance", id))) ?? undefined;
    });
  }

  listInstances(): Promise<{ id: string; record: string }[]> {
    return this.#run("listInstances", async () => {
      const keys: string[] = [];
      const pattern = this.#key("instance", "*");
      for await (const batch of this.#client.scanIterator({ MATCH: pattern, COUNT: 100 })) {
        keys.push(...batch);
      }
      if (!keys.length) return [];
      const records = await this.#client.mGet(keys);
      const at = this.#key("instance", "").length;
      return keys.flatMap((key, i) => {
        const record = records[i];
        return typeof record === "string" ? [{ id: key.slice(at), record }] : [];
      });
    });
  }

  deleteInstance(id: string): Promise<void> {
    return this.#run(
      "deleteInstance",
      async () => void await this.#client.del(this.#key("instance", id)),
    );
  }

  leaseHolder(id: string): Promise<LeaseInfo | undefined> {
    return this.#run("leaseHolder", async () => {
      const [holder, ttl] = await this.#client.multi()
        .get(this.#key("lease", id))
        .pTTL(this.#key("lease", id))
        .exec();
      const left = Number(ttl);
      return typeof holder === "string" && left > 0
        ? { instanceId: holder, expiresInMs: left }
        : undefined;
    });
  }

  ping(): Promise<void> {
    return this.#run("ping", async () => void await this.#client.ping());
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#probe);
    if (this.#client.isReady) {
      await this.#run("close", () => this.#client.close()).catch(() => this.#client.destroy());
    } else if (this.#client.isOpen) {
      this.#client.destroy();
    }
  }
}
