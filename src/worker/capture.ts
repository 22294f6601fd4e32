/** A call's stdout and stderr, captured through Pyodide's output hooks and cut at their caps. */
import type { Streamer } from "./stream.ts";

const decoder = new TextDecoder();

/** One stream of the call in progress; a call never sees another call's output. */
export class Capture {
  #chunks: Uint8Array[] = [];
  #kept = 0;
  cut = false;
  /** `onKept` sees every part that is kept, as it is written (for live output). */
  constructor(
    private readonly cap: number,
    private readonly onKept?: (part: Uint8Array) => void,
  ) {}

  write = (buf: Uint8Array): number => {
    const room = this.cap - this.#kept;
    if (buf.length > room) this.cut = true;
    if (room > 0) {
      const part = buf.slice(0, Math.min(room, buf.length));
      this.#chunks.push(part);
      this.#kept += part.length;
      this.onKept?.(part);
    }
    return buf.length;
  };

  text(): string {
    if (this.#kept === 0) return "";
    const all = new Uint8Array(this.#kept);
    let at = 0;
    for (const c of this.#chunks) {
      all.set(c, at);
      at += c.length;
    }
    return decoder.decode(all);
  }
}

/** Both streams; Pyodide's hooks are set once and write to whichever call is running. */
export class Output {
  stdout = new Capture(0);
  stderr = new Capture(0);

  /** Starts a call's capture with fresh, capped streams; `live` also posts them as they come. */
  begin(caps: { stdoutBytes: number; stderrBytes: number }, live?: Streamer): void {
    this.stdout = new Capture(caps.stdoutBytes, live && ((b) => live.add("stdout", b)));
    this.stderr = new Capture(caps.stderrBytes, live && ((b) => live.add("stderr", b)));
  }
}
