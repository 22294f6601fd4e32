/**
 * Installable distributions, from the lock file or a simple index, with their bytes fetched once:
 * read from the cache when there, else downloaded, checked against their sha256 and cached.
 */
import { sha256Hex } from "../digest.ts";
import type { Hold, WheelCache } from "./cache.ts";
import type { LockIndex } from "./lockfile.ts";
import { canonicalName } from "./names.ts";
import { findPureWheel } from "./pypi.ts";
import { fetchBytes, type IndexLocation } from "./source.ts";
import { wheelRequirements } from "./wheel.ts";

/** One installable distribution and the names it depends on. */
export interface Candidate {
  name: string;
  version: string;
  fileName: string;
  installDir: "site" | "dynlib";
  imports: string[];
  depends: string[];
  /** Reads or downloads the wheel; `hold` keeps it in the cache until the install releases it. */
  bytes: (signal?: AbortSignal, hold?: Hold) => Promise<Uint8Array>;
}

/** How long a failed download is not tried again. */
const RETRY_AFTER_MS = 60_000;

class NotOnIndex extends Error {}

/** Candidates, memoized per process, and the downloads behind them. */
export class Candidates {
  readonly #memo = new Map<string, Promise<Candidate>>();
  readonly #failures = new Map<string, { message: string; at: number }>();

  constructor(
    private readonly cache: WheelCache,
    /** The simple index for pure-Python wheels, if the policy names one. */
    private readonly pypi: string | null | undefined,
  ) {}

  /** The lock file's entry `key`, whose wheel comes from `location`. */
  fromLock(lock: LockIndex, location: IndexLocation, key: string): Promise<Candidate> {
    let found = this.#memo.get(key);
    if (!found) {
      const pkg = lock.get(key)!;
      const candidate: Candidate = {
        name: key,
        version: pkg.version,
        fileName: pkg.file_name,
        installDir: pkg.install_dir,
        imports: pkg.imports,
        depends: pkg.depends.map(canonicalName),
        bytes: (signal, hold) =>
          this.#download(
            pkg.file_name,
            pkg.sha256,
            (s) => location.read(pkg.file_name, s),
            signal,
            hold,
          ),
      };
      found = Promise.resolve(candidate);
      this.#memo.set(key, found);
    }
    return found;
  }

  /** The newest pure-Python wheel of `key` on the simple index that fits `specifier`. */
  async fromPypi(
    key: string,
    specifier: string,
    signal?: AbortSignal,
  ): Promise<Candidate | undefined> {
    const memo = `pypi:${key}${specifier}`;
    let found = this.#memo.get(memo);
    if (!found) {
      found = (async () => {
        const wheel = await this.#unlessFailedLately(
          `pypi:${key}`,
          () => findPureWheel(this.pypi!, key, specifier, signal),
        );
        if (!wheel) throw new NotOnIndex();
        const download = (s?: AbortSignal, hold?: Hold) =>
          this.#download(wheel.fileName, wheel.sha256, (x) => fetchBytes(wheel.url, x), s, hold);
        const bytes = await download(signal);
        return {
          name: key,
          version: wheel.version,
          fileName: wheel.fileName,
          installDir: "site" as const,
          imports: [key.replaceAll("-", "_")],
          depends: await wheelRequirements(bytes),
          // From the cache again (not kept here: memoized candidates would pin every wheel).
          bytes: download,
        };
      })();
      this.#memo.set(memo, found);
      // A failure is not remembered: the index may be reachable on the next call.
      found.catch(() => this.#memo.delete(memo));
    }
    try {
      return await found;
    } catch (err) {
      if (err instanceof NotOnIndex) return undefined;
      throw err;
    }
  }

  /** Reads a wheel from the cache, else downloads and checks it, then caches it. */
  async #download(
    fileName: string,
    sha256: string | undefined,
    read: (signal?: AbortSignal) => Promise<Uint8Array>,
    signal?: AbortSignal,
    hold?: Hold,
  ): Promise<Uint8Array> {
    if (sha256) {
      const cached = await this.cache.get(fileName, sha256, hold);
      if (cached) return cached;
    }
    return await this.#unlessFailedLately(fileName, async () => {
      const bytes = await read(signal);
      const actual = await sha256Hex(bytes);
      if (sha256 && actual !== sha256.toLowerCase()) {
        throw new Error(
          `${fileName} does not match its sha256 (expected ${sha256}, got ${actual})`,
        );
      }
      await this.cache.put(fileName, actual, bytes, hold);
      return bytes;
    });
  }

  /**
   * Runs a download unless the same one failed less than RETRY_AFTER_MS ago, in which case that
   * failure is repeated at once: smolagents lists the same packages on every call, and a server
   * without network should not pay for a failing download each time.
   */
  async #unlessFailedLately<T>(key: string, download: () => Promise<T>): Promise<T> {
    const failed = this.#failures.get(key);
    if (failed && performance.now() - failed.at < RETRY_AFTER_MS) {
      throw new Error(`${failed.message} (not retried for ${RETRY_AFTER_MS / 1000} s)`);
    }
    try {
      const result = await download();
      this.#failures.delete(key);
      return result;
    } catch (err) {
      const message = (err as Error).message;
      const aborted = (err as Error).name === "AbortError" || /no answer in time/.test(message);
      if (!aborted) this.#failures.set(key, { message, at: performance.now() });
      throw err;
    }
  }
}
