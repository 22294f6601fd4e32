/** A stored record refused on reading; thrown on the sealing thread too, so it imports nothing. */

/** Why a stored record was refused. */
export type RejectReason =
  | "truncated"
  | "missing"
  | "tampered"
  | "wrong-key"
  | "format"
  | "corrupt";

/**
 * A stored record failed authentication or is damaged: modified, cut short, moved from another
 * session, written under another key or by other software. Never restore from it; the caller
 * answers `SessionLost` and logs a `security` event.
 */
export class CheckpointRejected extends Error {
  override name = "CheckpointRejected";
  constructor(
    readonly reason: RejectReason,
    /** What was read: `checkpoint <id>`, `meta <id>` or `base <hash>`. */
    readonly record: string,
    /** Why, in a few words (the message adds what and which record). */
    readonly detail: string,
  ) {
    super(`Stored ${record} was refused (${reason}): ${detail}`);
  }
}
