/**
 * Live output over Server-Sent Events: an execute call sent with `Accept: text/event-stream`
 * answers with `stdout` and `stderr` events as the code prints (batched by the worker; each
 * event's data is the text as a JSON string, so every character survives), a `tool_call` event
 * each time the code calls one of the request's host tools (answered at `…/tool-results`;
 * the code waits), then one `result`
 * event whose data is exactly the JSON answer a plain call returns. The call belongs to the
 * session, not to the connection: a client that goes away does not stop it, and its result
 * lands in the session as usual. Events the client has not taken are charged to the session; a
 * client that takes none for `UNREAD_MS` while some wait loses the stream (see `deliver.ts`).
 */
import type { Context } from "hono";
import { errorBody, MoatError } from "../errors.ts";
import type { OutputHook } from "../sandbox/interpreter.ts";
import type { ToolCallEvent } from "../sandbox/tool_calls.ts";
import type { Answer } from "../session/answer.ts";
import type { Held } from "../session/held.ts";
import { logDropped, type UnreadGuard, unreadGuard } from "./deliver.ts";

/** How often a comment line is sent while nothing else is. */
const KEEPALIVE_MS = 15_000;
/** Characters of an event sent at a time. */
const PIECE = 64 * 1024;

/** The request asked for an event stream. */
export function wantsStream(c: Context): boolean {
  return (c.req.header("accept") ?? "").toLowerCase().includes("text/event-stream");
}

interface Event {
  event: "stdout" | "stderr" | "tool_call" | "result" | "error";
  data: string;
}

/** What a streamed call hands the session: where its output and tool calls go. */
export interface StreamHooks {
  onOutput: OutputHook;
  onToolCall: (call: ToolCallEvent) => void;
  /** Aborted once the client went away: a tool call waiting for it ends then. */
  signal: AbortSignal;
}

/**
 * Starts the call with an output hook and streams it. `start` rejects before the call is queued
 * for what must be an HTTP status (unknown session 404, full queue 429, shutting down 503); a
 * failure after the stream began (no interpreter could be started) is an `error` event with the
 * JSON error body.
 */
export async function streamCall(
  c: Context,
  session: string,
  start: (hooks: StreamHooks) => Promise<{ answer: Promise<Answer>; held: Held }>,
): Promise<Response> {
  const events: (Event & { release: () => void })[] = [];
  let wake: (() => void) | undefined;
  // Known once the call is queued; output comes only after that.
  const charged: { held?: Held } = {};
  let dropped = false;
  const push = (event: Event) => {
    if (dropped) return;
    events.push({ ...event, release: charged.held?.add(event.data.length) ?? (() => {}) });
    wake?.();
  };
  const gone = new AbortController();
  const started = await start({
    onOutput: (stream, text) => push({ event: stream, data: JSON.stringify(text) }),
    onToolCall: (call) => push({ event: "tool_call", data: JSON.stringify(call) }),
    signal: gone.signal,
  });
  charged.held = started.held;
  started.answer.then(
    (a) => push({ event: "result", data: a.body }),
    (err) => {
      const body = err instanceof MoatError
        ? errorBody(err.name, err.message)
        : errorBody("InternalError", "An internal error occurred; it was logged");
      if (!(err instanceof MoatError)) {
        console.error(
          JSON.stringify({ event: "internal-error", message: String(err?.stack ?? err) }),
        );
      }
      push({ event: "error", data: JSON.stringify(body) });
    },
  );
  return c.body(
    sseBody(session, events, started.held, {
      next: () => new Promise<void>((resolve) => wake = resolve),
      wake: () => wake?.(),
      drop: () => {
        dropped = true;
        gone.abort();
      },
    }),
    200,
    {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
    },
  );
}

/**
 * The event stream's body, pulled by the socket: an event goes out in pieces, each once the
 * socket took the one before, so a client that reads nothing leaves the rest here, charged to
 * its session, until `UNREAD_MS` pass and the stream is cut.
 */
function sseBody(
  session: string,
  events: (Event & { release: () => void })[],
  held: Held | undefined,
  signal: { next(): Promise<void>; wake(): void; drop(): void },
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let current: { text: string; at: number; event: Event & { release: () => void } } | undefined;
  let sent = 0;
  let ping = false;
  let ended = false;
  let guard: UnreadGuard;
  let keepalive: ReturnType<typeof setInterval>;
  const end = () => {
    ended = true;
    signal.drop();
    guard.stop();
    clearInterval(keepalive);
    for (const e of events.splice(0)) e.release();
    current?.event.release();
    current = undefined;
    signal.wake();
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      guard = unreadGuard(held, 0, (why) => {
        const waiting = (current ? current.text.length - current.at : 0) +
          events.reduce((n, e) => n + e.data.length, 0);
        logDropped(session, sent + waiting, sent, why);
        end();
        controller.error(new Error(`event stream dropped: ${why}`));
      });
      // A comment line while nothing else is sent, so that proxies keep an idle stream open.
      keepalive = setInterval(() => {
        ping = true;
        signal.wake();
      }, KEEPALIVE_MS);
    },
    async pull(controller) {
      while (!current) {
        if (ended) return;
        const event = events.shift();
        if (event) {
          current = { text: `event: ${event.event}\ndata: ${event.data}\n\n`, at: 0, event };
          break;
        }
        if (ping) {
          ping = false;
          return controller.enqueue(encoder.encode(": keep-alive\n\n"));
        }
        guard.idle();
        await signal.next();
      }
      // Waiting for the socket to take this piece: the client must read within UNREAD_MS.
      guard.wait();
      // (`data` is JSON: one line, whatever it holds.)
      const piece = current.text.slice(current.at, current.at + PIECE);
      current.at += piece.length;
      controller.enqueue(encoder.encode(piece));
      if (current.at < current.text.length) return;
      const { event } = current;
      event.release();
      sent += event.data.length;
      current = undefined;
      if (event.event === "result" || event.event === "error") {
        end();
        controller.close();
      }
    },
    cancel() {
      end(); // the client left; the call goes on and lands in the session
    },
  }, { highWaterMark: 0 });
}
