/**
 * Live output: what the running call prints, posted to the host as `output` notices while the
 * call runs. Python prints synchronously inside the wasm, so the worker never gets back to its
 * event loop during a busy cell; `postMessage` from inside the write hook still reaches the
 * host at once (messages are queued for the host while this thread keeps running). Output is
 * batched: a write goes at once when no notice went in the last 50 ms; otherwise it waits until
 * 16 KiB are pending or 50 ms have passed (checked at the next write, or by a timer while the
 * cell awaits), and whatever is left goes when the call ends, before its reply. A busy cell that
 * prints and then computes silently sends the tail of a burst with its next print or its end.
 */
import type { OutputNotice, WorkerNotice } from "../protocol/messages.ts";

/** Bytes pending that make a notice go at once. */
const FLUSH_BYTES = 16 * 1024;
/** The longest output waits before it is posted. */
const FLUSH_MS = 50;

type Stream = "stdout" | "stderr";

/** Batches one call's output into `output` notices, in the order it was printed. */
export class Streamer {
  #pending: [Stream, Uint8Array][] = [];
  #pendingBytes = 0;
  /** When the last notice went; the first output of a call goes at once. */
  #last = -Infinity;
  #timer?: ReturnType<typeof setTimeout>;
  // One decoder per stream, so a UTF-8 character split between writes is kept whole.
  readonly #decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };

  constructor(private readonly post: (notice: WorkerNotice) => void) {}

  /** Output the capture kept (never more than its cap). */
  add(stream: Stream, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#pending.push([stream, bytes]);
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes >= FLUSH_BYTES || performance.now() - this.#last >= FLUSH_MS) {
      this.flush();
    } else this.#timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Posts what is pending, one chunk per run of one stream. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#last = performance.now();
    if (this.#pending.length === 0) return;
    const chunks: OutputNotice["chunks"] = [];
    for (const [stream, bytes] of this.#pending) {
      const text = this.#decoders[stream].decode(bytes, { stream: true });
      const tail = chunks.at(-1);
      if (tail?.[0] === stream) tail[1] += text;
      else if (text) chunks.push([stream, text]);
    }
    this.#pending = [];
    this.#pendingBytes = 0;
    if (chunks.length) this.post({ notice: "output", chunks });
  }

  /** The call ended: posts the rest, before the call's reply. */
  end(): void {
    this.flush();
    const rest: OutputNotice["chunks"] = [];
    for (const stream of ["stdout", "stderr"] as const) {
      const text = this.#decoders[stream].decode();
      if (text) rest.push([stream, text]);
    }
    if (rest.length) this.post({ notice: "output", chunks: rest });
  }
}
