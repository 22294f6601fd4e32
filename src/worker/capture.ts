/** A call's stdout and stderr, captured through Pyodide's output hooks and cut at their caps. */

const decoder = new TextDecoder();

/** One stream of the call in progress; a call never sees another call's output. */
export class Capture {
  #chunks: Uint8Array[] = [];
  #kept = 0;
  cut = false;
  constructor(private readonly cap: number) {}

  write = (buf: Uint8Array): number => {
    const room = this.cap - this.#kept;
    if (buf.length > room) this.cut = true;
    if (room > 0) {
      const part = buf.slice(0, Math.min(room, buf.length));
      this.#chunks.push(part);
      this.#kept += part.length;
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

  /** Starts a call's capture with fresh, capped streams. */
  begin(caps: { stdoutBytes: number; stderrBytes: number }): void {
    this.stdout = new Capture(caps.stdoutBytes);
    this.stderr = new Capture(caps.stderrBytes);
  }
}
