/**
 * Live output over Server-Sent Events: an execute call sent with `Accept: text/event-stream`
 * answers with `stdout` and `stderr` events as the code prints (batched by the worker; each
 * event's data is the text as a JSON string, so every character survives), then one `result`
 * event whose data is exactly the JSON answer a plain call returns. The call belongs to the
 * session, not to the connection: a client that goes away does not stop it, and its result
 * lands in the session as usual.
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { errorBody, MoatError } from "../errors.ts";
import type { OutputHook } from "../sandbox/interpreter.ts";
import type { Answer } from "../session/answer.ts";

/** A comment line sent while nothing else is, so that proxies keep an idle stream open. */
const KEEPALIVE_MS = 15_000;

/** The request asked for an event stream. */
export function wantsStream(c: Context): boolean {
  return (c.req.header("accept") ?? "").toLowerCase().includes("text/event-stream");
}

interface Event {
  event: "stdout" | "stderr" | "result" | "error";
  data: string;
}

/**
 * Starts the call with an output hook and streams it. `start` rejects before the call is queued
 * for what must be an HTTP status (unknown session 404, full queue 429, shutting down 503); a
 * failure after the stream began (no interpreter could be started) is an `error` event with the
 * JSON error body.
 */
export async function streamCall(
  c: Context,
  start: (onOutput: OutputHook) => Promise<{ answer: Promise<Answer> }>,
): Promise<Response> {
  const events: Event[] = [];
  let wake: (() => void) | undefined;
  const push = (event: Event) => {
    events.push(event);
    wake?.();
  };
  const { answer } = await start((stream, text) =>
    push({ event: stream, data: JSON.stringify(text) })
  );
  answer.then(
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
  return streamSSE(c, async (sse) => {
    const keepalive = setInterval(() => sse.write(": keep-alive\n\n"), KEEPALIVE_MS);
    try {
      for (;;) {
        for (let e = events.shift(); e; e = events.shift()) {
          await sse.writeSSE(e); // a write to a client that left is dropped, not thrown
          if (e.event === "result" || e.event === "error") return;
        }
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
      }
    } finally {
      clearInterval(keepalive);
    }
  });
}
