/**
 * Sends an answer without holding it for a client that does not read. A big answer goes out as a
 * stream the socket pulls, a chunk at a time, charged to its session until sent; a client that
 * takes nothing for `UNREAD_MS` (or a session the memory watchdog stops) gets its connection cut
 * and the answer is dropped with an `answer-dropped` log line. Small answers go as they are: the
 * socket's buffer takes them whole.
 */
import { logEvent } from "../audit.ts";
import type { Held } from "../session/held.ts";

/** How long a client may take no bytes of an answer before the answer is dropped. */
export const UNREAD_MS = 30_000;
/** Answers up to this size are sent whole. */
const WHOLE_BYTES = 64 * 1024;
const CHUNK_BYTES = 64 * 1024;

/** Why an answer was dropped before its client read it all. */
export type DropReason = "unread" | "memory";

/** Reports a dropped answer: the audit line, for an operator to see who did not read. */
export function logDropped(session: string, bytes: number, sent: number, why: DropReason): void {
  logEvent("answer-dropped", {
    session,
    bytes,
    sent,
    reason: why === "unread"
      ? `the client read nothing for ${UNREAD_MS / 1000} s`
      : "the server ran short of memory and this session held the most",
  });
}

/** The wait for a client to take more of an answer, and the answer's charge to its session. */
export interface UnreadGuard {
  /** Something is waiting to be taken: (re)starts the `UNREAD_MS` wait. */
  wait(): void;
  /** Nothing is waiting (the client took it all): no deadline. */
  idle(): void;
  /** The answer is sent or gone: ends the wait and the charge. */
  stop(): void;
}

/**
 * Charges `bytes` to `held` and calls `onDrop` once, when a wait runs out (`unread`) or, while
 * something waits, the memory watchdog drops what the session holds (`memory`). A stream with
 * nothing waiting (a call that has not printed yet) is not dropped: its result is still to come.
 */
export function unreadGuard(
  held: Held | undefined,
  bytes: number,
  onDrop: (why: DropReason) => void,
): UnreadGuard {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let droppable: (() => void) | undefined;
  const release = held?.add(bytes) ?? (() => {});
  const idle = () => {
    clearTimeout(timer);
    droppable?.();
    droppable = undefined;
  };
  const stop = () => {
    idle();
    release();
  };
  const drop = (why: DropReason) => {
    stop();
    onDrop(why);
  };
  const wait = () => {
    idle();
    droppable = held?.add(0, () => drop("memory"));
    timer = setTimeout(() => drop("unread"), UNREAD_MS);
  };
  return { wait, idle, stop };
}

/** The body of a JSON answer: the text itself when small, else a stream bounded as above. */
export function answerBody(
  text: string,
  session: string,
  held?: Held,
): string | ReadableStream<Uint8Array> {
  if (text.length <= WHOLE_BYTES) return text;
  let bytes: Uint8Array | undefined = new TextEncoder().encode(text);
  const total = bytes.byteLength;
  let sent = 0;
  let guard: UnreadGuard;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      guard = unreadGuard(held, total, (why) => {
        bytes = undefined;
        logDropped(session, total, sent, why);
        controller.error(new Error(`answer dropped: ${why}`));
      });
      guard.wait();
    },
    pull(controller) {
      if (!bytes) return;
      guard.wait();
      // A copy: a view would keep the whole answer alive for as long as the socket holds it.
      const chunk = bytes.slice(sent, sent + CHUNK_BYTES);
      sent += chunk.byteLength;
      controller.enqueue(chunk);
      if (sent >= total) {
        bytes = undefined;
        guard.stop();
        controller.close();
      }
    },
    cancel() {
      bytes = undefined;
      guard.stop();
    },
  }, { highWaterMark: 0 });
}
