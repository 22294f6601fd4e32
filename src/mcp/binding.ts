/**
 * One MCP session is one Moat session: made on the session's first call, so a host that only
 * lists tools holds no interpreter, and deleted when the MCP session ends.
 */
import { SessionNotFound } from "../errors.ts";
import type { Answer } from "../session/answer.ts";
import type { CallRequest, SessionManager } from "../session/manager.ts";

/** What the MCP tools need from Moat: run a call, start clean, let go. */
export interface CallRunner {
  exec(request: CallRequest): Promise<Answer>;
  reset(): Promise<void>;
  close(): void;
}

/** The Moat session expired (idle past the policy's TTL); the next call starts a new one. */
export class SessionExpired extends Error {
  override name = "SessionExpired";
  constructor(ttlSeconds: number) {
    super(
      `This MCP session's Python session was removed after ${ttlSeconds} s unused (the policy's ` +
        `limits.idleTtlSeconds), so its variables, imports and definitions are gone and this ` +
        `call was NOT run. Call again to run it in a fresh session.`,
    );
  }
}

/** A Moat session made on first use, through the same SessionManager as the HTTP API. */
export class MoatSessionBinding implements CallRunner {
  #id?: string;
  #closed = false;

  constructor(
    private readonly sessions: SessionManager,
    private readonly ttlSeconds: number,
    /** The tenant of the MCP session (its Moat session is that tenant's); absent: the operator. */
    private readonly owner?: string,
  ) {}

  /** The Moat session id, once the first call made it. */
  get id(): string | undefined {
    return this.#id;
  }

  async exec(request: CallRequest): Promise<Answer> {
    if (this.#closed) throw new SessionNotFound("(this MCP session has ended)");
    const id = this.#id ??= (await this.sessions.create("persistent", { owner: this.owner })).id;
    try {
      return await this.sessions.exec(id, request);
    } catch (err) {
      if (!(err instanceof SessionNotFound)) throw err;
      this.#id = undefined;
      throw new SessionExpired(this.ttlSeconds);
    }
  }

  async reset(): Promise<void> {
    if (this.#id === undefined) return; // nothing ran yet: the first call starts clean anyway
    try {
      await this.sessions.reset(this.#id);
    } catch (err) {
      if (!(err instanceof SessionNotFound)) throw err;
      this.#id = undefined;
    }
  }

  /** Deletes the Moat session (its interpreter stops at once, even mid-call). */
  close(): void {
    this.#closed = true;
    const id = this.#id;
    this.#id = undefined;
    if (id === undefined) return;
    this.sessions.delete(id).catch(() => {}); // already expired
  }
}
