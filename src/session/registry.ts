/** The sessions one instance knows: live ones, and hibernated ones whose checkpoint is stored. */
import { SessionNotFound, TooManyRequests } from "../errors.ts";
import type { SessionMeta } from "../store/store.ts";
import type { DurableSessions } from "./durable.ts";
import { DEFAULT_SESSION, defaultSessionTenant, isDefaultSession, Session } from "./session.ts";

export class Registry {
  readonly #sessions = new Map<string, Session>();
  /** Set once the manager made it (it needs the manager's hooks). */
  durable?: DurableSessions;

  constructor() {
    this.#sessions.set(DEFAULT_SESSION, new Session(DEFAULT_SESSION, "persistent"));
  }

  values(): IterableIterator<Session> {
    return this.#sessions.values();
  }

  has(id: string): boolean {
    return this.#sessions.has(id);
  }

  add(session: Session): void {
    this.#sessions.set(session.id, session);
  }

  /** Whether `session` is still the one registered under its id. */
  holds(session: Session): boolean {
    return this.#sessions.get(session.id) === session;
  }

  /** Forgets a session; the default session starts again, empty. */
  remove(session: Session): void {
    if (this.holds(session)) this.#sessions.delete(session.id);
    if (session.id === DEFAULT_SESSION) {
      this.#sessions.set(DEFAULT_SESSION, new Session(DEFAULT_SESSION, "persistent"));
    }
  }

  /**
   * A session known here, or in the store (restored on its first call); 404 otherwise. A
   * tenant's default session (`default.<tenant>`) starts, empty, on first use.
   */
  async find(id: string): Promise<Session> {
    const session = this.#sessions.get(id);
    if (session) return session;
    const meta = await this.durable?.lookup(id);
    if (meta) return this.known(id, meta);
    if (isDefaultSession(id)) {
      const fresh = new Session(id, "persistent", undefined, defaultSessionTenant(id));
      this.#sessions.set(id, fresh);
      return fresh;
    }
    throw new SessionNotFound(id);
  }

  /** Sessions `tenant` holds here (live and hibernated), and how many of them are stored. */
  ownedBy(tenant: string): { held: number; stored: number } {
    let held = 0;
    let stored = 0;
    for (const s of this.#sessions.values()) {
      if (s.owner !== tenant) continue;
      held++;
      if (s.durable.stored) stored++;
    }
    return { held, stored };
  }

  /** Registers a stored session as hibernated here (unless it is live here already). */
  known(id: string, meta: SessionMeta): Session {
    const session = this.#sessions.get(id) ?? new Session(id, meta.mode);
    if (session.slot) return session;
    session.created = meta.created;
    session.lastUsed = meta.lastUsed;
    session.calls = meta.calls;
    session.authorizedImports = meta.authorizedImports as string[] | undefined;
    session.owner = typeof meta.tenant === "string" ? meta.tenant : undefined;
    session.durable.stored = true;
    session.durable.seq = 0; // nothing here matches a checkpoint: restore on use
    for (const name of meta.packages) session.packages.add(name);
    this.#sessions.set(id, session);
    return session;
  }

  /** Live interpreters and hibernated sessions, for the metrics. */
  counts(): { live: number; hibernated: number } {
    let live = 0;
    let hibernated = 0;
    for (const s of this.#sessions.values()) {
      if (s.slot) live++;
      else if (s.hibernated) hibernated++;
    }
    return { live, hibernated };
  }

  /**
   * At the cap of live interpreters, hibernates the least recently used idle session to make
   * room (durable sessions), else 429. Without durable sessions every session counts.
   */
  async makeRoom(cap: number, except?: Session): Promise<void> {
    const { durable } = this;
    const all = [...this.#sessions.values()];
    // Hibernated sessions hold no interpreter; ephemeral ones take one for every call.
    const live = durable
      ? all.filter((s) => (s.slot || s.mode === "ephemeral") && s !== except)
      : all;
    if (live.length < cap) return;
    const idle = live.filter((s) => s.queue.size === 0 && s.slot && s.mode === "persistent")
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const candidate of durable ? idle : []) {
      if (await candidate.queue.run(() => durable!.hibernate(candidate), true)) return;
    }
    throw new TooManyRequests(
      `The server holds its maximum of ${cap} sessions${durable ? " with every one busy" : ""}; ` +
        `delete one (DELETE /v1/sessions/{id}) or wait for idle ones to expire`,
    );
  }
}
