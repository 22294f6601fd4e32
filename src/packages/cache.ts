import { sha256Hex } from "../digest.ts";

/**
 * Downloaded wheels, kept in memory for this process and on disk for the next one, so a restart
 * does not download again. A file is only ever handed out after its sha256 matched.
 */
export class WheelCache {
  readonly #memory = new Map<string, Uint8Array>();
  #diskWarned = false;

  constructor(
    /** Directory of the on-disk copy. */
    readonly dir: string,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** The cached bytes of a wheel whose sha256 matches, or undefined. */
  async get(fileName: string, sha256: string): Promise<Uint8Array | undefined> {
    const key = `${sha256}/${fileName}`;
    const held = this.#memory.get(key);
    if (held) return held;
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.#path(fileName));
    } catch {
      return undefined;
    }
    if (await sha256Hex(bytes) !== sha256.toLowerCase()) return undefined; // stale or damaged
    this.#memory.set(key, bytes);
    return bytes;
  }

  /** Keeps verified bytes; a disk that cannot be written costs only the on-disk copy. */
  async put(fileName: string, sha256: string, bytes: Uint8Array): Promise<void> {
    this.#memory.set(`${sha256}/${fileName}`, bytes);
    const path = this.#path(fileName);
    const partial = `${path}.${crypto.randomUUID()}.part`;
    try {
      await Deno.mkdir(this.dir, { recursive: true });
      await Deno.writeFile(partial, bytes);
      await Deno.rename(partial, path);
    } catch (err) {
      await Deno.remove(partial).catch(() => {});
      if (!this.#diskWarned) {
        this.#diskWarned = true;
        this.log(
          `cannot write the package cache ${this.dir} (${(err as Error).message}); ` +
            `downloads are kept in memory only`,
        );
      }
    }
  }

  #path(fileName: string): string {
    return `${this.dir.replace(/\/$/, "")}/${fileName.replace(/[^\w.+-]/g, "_")}`;
  }
}
