/**
 * Failures a client can cause or must be told about. Each carries its HTTP status; `onError`
 * in `http/app.ts` is the one place that turns them into a response.
 */
export class MoatError extends Error {
  constructor(readonly status: 400 | 401 | 404 | 409 | 410 | 413 | 429 | 503, message: string) {
    super(message);
  }
}

/** The request named a session that does not exist (or expired). */
export class SessionNotFound extends MoatError {
  override name = "SessionNotFound";
  constructor(id: string) {
    super(404, `No session '${id}': it never existed, expired, or was deleted`);
  }
}

/**
 * A durable session whose state cannot be restored (its checkpoint is missing, refused or does
 * not boot): the call was not run, and the id is gone, never silently given a fresh interpreter.
 */
export class SessionLost extends MoatError {
  override name = "SessionLost";
  constructor(message: string) {
    super(410, `${message}. The call was not run; create a new session and send what it needs.`);
  }
}

/** The server, one session, or one tenant is at its cap; `retryAfter`: seconds, when known. */
export class TooManyRequests extends MoatError {
  override name = "TooManyRequests";
  constructor(message: string, readonly retryAfter?: number) {
    super(429, message);
  }
}

/** The server is stopping or cannot start an interpreter now. */
export class Unavailable extends MoatError {
  override name = "Unavailable";
  constructor(message: string) {
    super(503, message);
  }
}

/** The request body is malformed; the message names the field. */
export class BadRequest extends MoatError {
  override name = "BadRequest";
  constructor(message: string) {
    super(400, message);
  }
}

/** The JSON body of every HTTP error response: `{"error": {"name", "message"}}`. */
export function errorBody(name: string, message: string) {
  return { error: { name, message } };
}
