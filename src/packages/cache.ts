import { sha256Hex } from "../digest.ts";

/** Wheels a running install uses: they are never evicted until it releases them. */
export type Hold = Set<string>;

/** Largest share of the budget kept in memory while the disk copy works. */
const MEMORY_SHARE = 4;
const MEMORY_MAX = 64 * 1024 * 1024;

/**
 * Downloaded wheels, on disk for the next process and a few in memory for this one, within
 * `packages.cacheMb`: past the budget the least recently used wheels go, except those a running
 * install holds. A file is only ever handed out after its sha256 matched. Without a writable
 * disk the whole budget is kept in memory instead.
 */
export class WheelCache {
  /** File name (as on disk) → bytes; oldest use first. */
  readonly #memory = new Map<string, { sha256: string; bytes: Uint8Array }>();
  #memoryBytes = 0;
  /** File name → size of the file on disk; oldest use first. */
  readonly #disk = new Map<string, number>();
  #diskBytes = 0;
  #scanned?: Promise<void>;
  readonly #pins = new Map<string, number>();
  #diskWorks = true;
  #diskWarned = false;

  constructor(
    /** Directory of the on-disk copy. */
    readonly dir: string,
    private readonly log: (line: string) => void = () => {},
    /** `packages.cacheMb` in bytes. */
    readonly budgetBytes: number = Infinity,
  ) {}

  /** Bytes of wheels on disk now, as this process counts them (for tests and metrics). */
  get diskBytes(): number {
    return this.#diskBytes;
  }

  /** The cached bytes of a wheel whose sha256 matches, or undefined; `hold` pins it. */
  async get(fileName: string, sha256: string, hold?: Hold): Promise<Uint8Array | undefined> {
    const name = safeName(fileName);
    const want = sha256.toLowerCase();
    const held = this.#memory.get(name);
    if (held && held.sha256 === want) {
      this.#pin(name, hold);
      this.#touchMemory(name);
      this.#touchDisk(name);
      return held.bytes;
    }
    await this.#scan();
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.#path(name));
    } catch {
      return undefined;
    }
    if (await sha256Hex(bytes) !== want) return undefined; // stale or damaged
    this.#pin(name, hold);
    this.#touchDisk(name);
    this.#remember(name, want, bytes);
    return bytes;
  }

  /** Keeps verified bytes (`hold` pins them); a disk that cannot be written keeps them in memory. */
  async put(fileName: string, sha256: string, bytes: Uint8Array, hold?: Hold): Promise<void> {
    const name = safeName(fileName);
    this.#pin(name, hold);
    this.#remember(name, sha256.toLowerCase(), bytes);
    await this.#scan();
    const path = this.#path(name);
    const partial = `${path}.${crypto.randomUUID()}.part`;
    try {
      await Deno.mkdir(this.dir, { recursive: true });
      await Deno.writeFile(partial, bytes);
      await Deno.rename(partial, path);
      this.#setDisk(name, bytes.byteLength);
      await this.#evictDisk();
    } catch (err) {
      await Deno.remove(partial).catch(() => {});
      this.#diskWorks = false;
      if (!this.#diskWarned) {
        this.#diskWarned = true;
        this.log(
          `cannot write the package cache ${this.dir} (${(err as Error).message}); ` +
            `downloads are kept in memory only`,
        );
      }
    }
    this.#evictMemory();
  }

  /** Ends an install's hold: its wheels may be evicted again (and are, if over the budget). */
  async release(hold: Hold): Promise<void> {
    for (const name of hold) {
      const left = (this.#pins.get(name) ?? 1) - 1;
      if (left > 0) this.#pins.set(name, left);
      else this.#pins.delete(name);
    }
    hold.clear();
    this.#evictMemory();
    await this.#evictDisk().catch(() => {});
  }

  #pin(name: string, hold: Hold | undefined): void {
    if (!hold || hold.has(name)) return;
    hold.add(name);
    this.#pins.set(name, (this.#pins.get(name) ?? 0) + 1);
  }

  #remember(name: string, sha256: string, bytes: Uint8Array): void {
    const old = this.#memory.get(name);
    if (old) this.#memoryBytes -= old.bytes.byteLength;
    this.#memory.delete(name);
    this.#memory.set(name, { sha256, bytes });
    this.#memoryBytes += bytes.byteLength;
  }

  #touchMemory(name: string): void {
    const entry = this.#memory.get(name);
    if (!entry) return;
    this.#memory.delete(name);
    this.#memory.set(name, entry);
  }

  /** Marks a use, here and in the file's modification time (the order the next process reads). */
  #touchDisk(name: string): void {
    const size = this.#disk.get(name);
    if (size === undefined) return;
    this.#disk.delete(name);
    this.#disk.set(name, size);
    const now = new Date();
    Deno.utime(this.#path(name), now, now).catch(() => {});
  }

  #setDisk(name: string, size: number): void {
    this.#diskBytes += size - (this.#disk.get(name) ?? 0);
    this.#disk.delete(name);
    this.#disk.set(name, size);
  }

  /** Memory keeps a few recent wheels while the disk works, the whole budget when it does not. */
  #evictMemory(): void {
    const budget = this.#diskWorks
      ? Math.min(this.budgetBytes / MEMORY_SHARE, MEMORY_MAX)
      : this.budgetBytes;
    for (const [name, entry] of this.#memory) {
      if (this.#memoryBytes <= budget) break;
      if (this.#pins.has(name)) continue;
      this.#memory.delete(name);
      this.#memoryBytes -= entry.bytes.byteLength;
    }
  }

  async #evictDisk(): Promise<void> {
    const victims: string[] = [];
    for (const [name, size] of this.#disk) {
      if (this.#diskBytes <= this.budgetBytes) break;
      if (this.#pins.has(name)) continue;
      this.#disk.delete(name);
      this.#diskBytes -= size;
      victims.push(name);
    }
    await Promise.all(victims.map((name) => Deno.remove(this.#path(name)).catch(() => {})));
  }

  /** Reads what an earlier process left on disk, oldest use first, once. */
  #scan(): Promise<void> {
    return this.#scanned ??= (async () => {
      const found: { name: string; size: number; at: number }[] = [];
      try {
        for await (const entry of Deno.readDir(this.dir)) {
          if (!entry.isFile) continue;
          const path = this.#path(entry.name);
          const info = await Deno.stat(path).catch(() => undefined);
          if (!info) continue;
          if (entry.name.endsWith(".part")) {
            // Left by a process that died mid-write, unless another is writing it right now.
            if (Date.now() - (info.mtime?.getTime() ?? 0) > 600_000) {
              await Deno.remove(path).catch(() => {});
            }
            continue;
          }
          found.push({ name: entry.name, size: info.size, at: info.mtime?.getTime() ?? 0 });
        }
      } catch {
        return; // no directory yet
      }
      found.sort((a, b) => a.at - b.at);
      for (const f of found) if (!this.#disk.has(f.name)) this.#setDisk(f.name, f.size);
      // Whatever was used since the scan started is more recent than what the scan found.
      await this.#evictDisk();
    })();
  }

  #path(name: string): string {
    return `${this.dir.replace(/\/$/, "")}/${name}`;
  }
}

function safeName(fileName: string): string {
  return fileName.replace(/[^\w.+-]/g, "_");
}
