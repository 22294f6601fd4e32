/**
 * Who else serves this deployment: each instance writes a heartbeat record to the session store
 * every second, signed with a key only instances have (`keys.ts`), naming its id and the address
 * other instances reach it at (`MOAT_ADVERTISE_URL`). A record lives 3 s unless written again, so
 * an instance killed with -9 is known dead within 3 s, long before its 10 s leases expire. A
 * record someone else wrote into the store (a Redis reachable by others) does not verify, and is
 * never followed.
 */
import type { Leases } from "../store/store.ts";
import { type PeerKeys, sign, verify } from "./keys.ts";

/** How often an instance writes its heartbeat. */
export const HEARTBEAT_MS = 1_000;
/** How long a heartbeat lasts: an instance that wrote none for this long is taken for dead. */
export const HEARTBEAT_TTL_MS = 3_000;

/** What an instance says of itself in its heartbeat record. */
export interface InstanceRecord {
  id: string;
  /** `MOAT_ADVERTISE_URL`: where other instances forward its sessions' requests; absent: nowhere. */
  url?: string;
  /** The machine's process id and when it started, so an operator can tell two servers apart. */
  pid: number;
  started: number;
}

/** What `Instances` works with. */
export interface InstancesOptions {
  store: Leases;
  keys: PeerKeys;
  instanceId: string;
  /** `MOAT_ADVERTISE_URL`. */
  url?: string;
  /**
   * Told when this instance's own heartbeat lapsed (it could not write it for longer than its
   * lifetime): others may have taken its sessions over meanwhile, so its leases are not to be
   * trusted without asking the store again.
   */
  onLapse?: () => void;
  log?: (line: string) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The instances sharing a store, as their signed heartbeats say. */
export class Instances {
  readonly #o: InstancesOptions;
  readonly #self: InstanceRecord;
  #timer?: ReturnType<typeof setInterval>;
  /** When the last heartbeat was stored (performance.now()). */
  #lastBeat = 0;
  #lapsed = false;
  /** Verified records read in the last heartbeat interval, so a forwarded call costs no read. */
  readonly #cache = new Map<string, { record?: InstanceRecord; at: number }>();

  constructor(options: InstancesOptions) {
    this.#o = options;
    this.#self = {
      id: options.instanceId,
      ...(options.url ? { url: options.url } : {}),
      pid: Deno.pid,
      started: Date.now(),
    };
  }

  /** This instance's id. */
  get id(): string {
    return this.#self.id;
  }

  /** Whether this instance advertises an address, so others may forward to it. */
  get advertised(): boolean {
    return this.#self.url !== undefined;
  }

  /** Writes the first heartbeat (a store that is down does not stop start-up), then every second. */
  async start(): Promise<void> {
    await this.#beat();
    this.#timer = setInterval(() => void this.#beat(), HEARTBEAT_MS);
    Deno.unrefTimer(this.#timer);
  }

  /** Stops the heartbeat and removes the record: the instance is leaving. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#o.store.deleteInstance(this.id).catch(() => {});
  }

  async #beat(): Promise<void> {
    const now = performance.now();
    if (this.#lastBeat && now - this.#lastBeat > HEARTBEAT_TTL_MS && !this.#lapsed) {
      this.#lapsed = true;
      this.#o.log?.(
        `instance ${this.id}: no heartbeat stored for ${Math.round(now - this.#lastBeat)} ms; ` +
          "other instances may have taken its sessions over, so each is checked with the store",
      );
      this.#o.onLapse?.();
    }
    try {
      await this.#o.store.putInstance(this.id, this.#seal(this.#self), HEARTBEAT_TTL_MS);
      this.#lastBeat = performance.now();
      this.#lapsed = false;
    } catch {
      // The store is down: nobody else can take leases either; the next beat tries again.
    }
  }

  #seal(record: InstanceRecord): string {
    const payload = encoder.encode(JSON.stringify(record)).toBase64({
      alphabet: "base64url",
      omitPadding: true,
    });
    return `${payload}.${sign(this.#o.keys.records, `${record.id}.${payload}`)}`;
  }

  /** The record stored under `id` if it verifies and names that id; undefined otherwise. */
  #open(id: string, stored: string | undefined): InstanceRecord | undefined {
    const [payload, mac] = stored?.split(".") ?? [];
    if (!payload || !mac || !verify(this.#o.keys.records, `${id}.${payload}`, mac)) {
      return undefined;
    }
    try {
      const record = JSON.parse(
        decoder.decode(Uint8Array.fromBase64(payload, { alphabet: "base64url" })),
      ) as InstanceRecord;
      return record.id === id ? record : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The live instance `id` as its verified heartbeat says, or undefined when it has none (dead,
   * never started, or a record nobody with the key wrote). `fresh` skips the one-second cache.
   * @throws StoreUnavailable when the store cannot be asked.
   */
  async lookup(id: string, fresh = false): Promise<InstanceRecord | undefined> {
    const now = performance.now();
    const cached = this.#cache.get(id);
    if (!fresh && cached && now - cached.at < HEARTBEAT_MS) return cached.record;
    const record = this.#open(id, await this.#o.store.getInstance(id));
    this.#cache.set(id, { record, at: now });
    if (this.#cache.size > 1000) this.#cache.delete(this.#cache.keys().next().value!);
    return record;
  }

  /** Every other live instance with a verified heartbeat. */
  async others(): Promise<InstanceRecord[]> {
    const found: InstanceRecord[] = [];
    for (const { id, record } of await this.#o.store.listInstances()) {
      const open = id === this.id ? undefined : this.#open(id, record);
      if (open) found.push(open);
    }
    return found;
  }
}
