/** The running call's live output as the host receives it: checked, and bounded by the caps. */
import type { OutputNotice } from "../protocol/messages.ts";

/** Receives a call's output as it is printed (see `src/worker/stream.ts`). */
export type OutputHook = (stream: "stdout" | "stderr", text: string) => void;

/** Passes one call's `output` notices to its hook, never more of a stream than its cap. */
export class LiveOutput {
  readonly #room: { stdout: number; stderr: number };

  constructor(
    private readonly hook: OutputHook,
    caps: { stdoutBytes: number; stderrBytes: number },
  ) {
    this.#room = { stdout: caps.stdoutBytes, stderr: caps.stderrBytes };
  }

  /**
   * An `output` notice from the worker (checked by the host against its schema). The worker already kept only what the caps
   * allow; counting UTF-16 units (never more than the UTF-8 bytes the worker capped) here means
   * a worker that misbehaves cannot send more either.
   */
  receive(notice: OutputNotice): void {
    for (const [stream, text] of notice.chunks) {
      const kept = text.slice(0, this.#room[stream]);
      this.#room[stream] -= kept.length;
      if (kept) this.hook(stream, kept);
    }
  }
}
