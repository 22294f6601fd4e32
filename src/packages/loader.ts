import type { z } from "zod";
import type { PackagesSchema } from "../policy/schema.ts";
import type { WheelBytes } from "../protocol/messages.ts";
import { type Hold, WheelCache } from "./cache.ts";
import { type Candidate, Candidates } from "./candidates.ts";
import { LockFileError, LockIndex, parseLockFile } from "./lockfile.ts";
import { canonicalName, classifyRequested } from "./names.ts";
import { evaluateMarker, parseRequirement } from "./requirements.ts";
import { IndexLocation, PYODIDE_CDN } from "./source.ts";

/** The `packages` section of a policy. */
export type PackageRules = z.infer<typeof PackagesSchema>;

/** A wheel ready to be installed into an interpreter: what the worker is sent, and its version. */
export interface WheelPayload extends WheelBytes {
  version: string;
}

/** A requested package that will not be importable, and why. */
export interface PackageFailure {
  /** The name as the call sent it. */
  name: string;
  kind: "refused" | "missing" | "error";
  reason: string;
  /** Import names that should raise ModuleNotFoundError naming `reason`. */
  importNames: string[];
}

/** What a call's `packages` list comes to, before anything is installed. */
export interface LoadPlan {
  /** Wheels to install, dependencies first. */
  wheels: WheelPayload[];
  /** Entries that need nothing: standard library, wildcards, already loaded. */
  skipped: { name: string; reason: string }[];
  failed: PackageFailure[];
  /** Ends the plan's hold on its wheels in the cache; call once they are installed (or not). */
  release: () => Promise<void>;
}

/** Where the Pyodide wheels come from, with the lock file that lists them. */
interface WheelIndex {
  location: IndexLocation;
  lock: LockIndex;
  /** Why the index is unusable, when it is. */
  problem?: string;
}

/** Most packages one PyPI request may pull in, so a dependency storm cannot stall a call. */
const MAX_PYPI_PACKAGES = 64;

/**
 * Resolves the `packages` of a call to wheels, on the host: names are classified and mapped with
 * Pyodide's lock file, dependencies followed, the policy applied, and wheel bytes read from the
 * mirror, the CDN or the simple index (cached on disk, sha256 checked). Interpreters never touch
 * the network or the disk for packages; they receive bytes.
 */
export class PackageLoader {
  readonly #candidates: Candidates;
  readonly #cache: WheelCache;
  readonly #allow: Set<string>;
  readonly #deny: Set<string>;

  private constructor(
    readonly rules: PackageRules,
    private readonly index: WheelIndex,
    /** Pyodide's own lock file, to say when a mirror lacks a package Pyodide has. */
    private readonly pyodideLock: LockIndex,
    cache: WheelCache,
  ) {
    this.#candidates = new Candidates(cache, rules.pypi);
    this.#cache = cache;
    const key = (n: string) => index.lock.find(n) ?? pyodideLock.find(n) ?? canonicalName(n);
    this.#allow = new Set(rules.allow.map((n) => n === "*" ? n : key(n)));
    this.#deny = new Set(rules.deny.map(key));
  }

  /**
   * Reads the lock files. `pyodideDir` holds the npm package's `pyodide-lock.json`; a mirror's
   * own lock file is required when `rules.index` names one.
   */
  static async create(
    rules: PackageRules,
    options: { pyodideDir: string; cacheDir: string; log?: (line: string) => void },
  ): Promise<PackageLoader> {
    const bundled = new LockIndex(parseLockFile(
      await Deno.readTextFile(`${options.pyodideDir.replace(/\/$/, "")}/pyodide-lock.json`),
      "Pyodide's pyodide-lock.json",
    ));
    const spec = rules.index ?? PYODIDE_CDN;
    let location: IndexLocation;
    try {
      location = IndexLocation.parse(spec);
    } catch (err) {
      throw new LockFileError(`Policy key 'packages.index': ${(err as Error).message}`);
    }
    let lock = bundled;
    let problem: string | undefined;
    if (spec !== PYODIDE_CDN) {
      const where = `the lock file of packages.index (${location.resolve("pyodide-lock.json")})`;
      let text: string | undefined;
      try {
        text = new TextDecoder().decode(await location.read("pyodide-lock.json"));
      } catch (err) {
        // The server still serves; every call that needs a package says why it cannot have it.
        problem = `the package index ${location} cannot be read (${(err as Error).message})`;
      }
      if (text !== undefined) lock = new LockIndex(parseLockFile(text, where));
      const want = bundled.lock.info.abi_version;
      const got = lock.lock.info.abi_version;
      if (want && got && want !== got) {
        throw new LockFileError(
          `${where} is for Pyodide ABI ${got}, but this server runs ABI ${want}; ` +
            `rebuild the mirror with scripts/mirror_packages.ts`,
        );
      }
    }
    const cache = new WheelCache(options.cacheDir, options.log, rules.cacheMb * 1024 * 1024);
    return new PackageLoader(rules, { location, lock, problem }, bundled, cache);
  }

  /** Where Pyodide wheels come from, for messages. */
  get indexDescription(): string {
    return String(this.index.location);
  }

  /**
   * Works out what a call's `packages` list needs in an interpreter that already has `loaded`
   * (canonical names), and downloads it. Never throws: every problem is a `failed` entry.
   */
  async plan(
    entries: readonly string[],
    loaded: ReadonlySet<string>,
    signal?: AbortSignal,
  ): Promise<LoadPlan> {
    const hold: Hold = new Set();
    const plan: LoadPlan = {
      wheels: [],
      skipped: [],
      failed: [],
      release: () => this.#cache.release(hold),
    };
    const wanted: { entry: string; name: string; order: Candidate[] }[] = [];
    for (const item of classifyRequested(entries)) {
      if (item.kind === "skip") {
        plan.skipped.push({ name: item.entry, reason: item.reason });
        continue;
      }
      if (item.kind === "refuse") {
        plan.failed.push({
          name: item.entry,
          kind: "refused",
          reason: `refused: ${item.reason}`,
          importNames: [],
        });
        continue;
      }
      const resolved = await this.#resolve(item.name, loaded, signal);
      if ("reason" in resolved) {
        plan.failed.push({
          name: item.entry,
          kind: resolved.kind,
          reason: resolved.reason,
          importNames: this.#importNames(item.name),
        });
      } else if (resolved.order.length === 0) {
        plan.skipped.push({ name: item.entry, reason: "already loaded in this session" });
      } else wanted.push({ entry: item.entry, name: item.name, order: resolved.order });
    }
    const fetched = new Map<string, Promise<Uint8Array>>();
    for (const { entry, name, order } of wanted) {
      const bytes: Uint8Array[] = [];
      try {
        for (const c of order) {
          if (fetched.has(c.name)) continue;
          const download = c.bytes(signal, hold);
          download.catch(() => {}); // awaited below, maybe after another download failed first
          fetched.set(c.name, download);
        }
        for (const c of order) bytes.push(await fetched.get(c.name)!);
      } catch (err) {
        plan.failed.push({
          name: entry,
          kind: "error",
          reason: `could not be downloaded: ${(err as Error).message}`,
          importNames: this.#importNames(name),
        });
        continue;
      }
      order.forEach((c, i) => {
        if (plan.wheels.some((w) => w.name === c.name)) return;
        const { name, version, fileName, installDir, imports } = c;
        plan.wheels.push({ name, version, fileName, installDir, imports, bytes: bytes[i] });
      });
    }
    return plan;
  }

  /** Import names that should explain a failure: the name itself and those the lock lists. */
  #importNames(name: string): string[] {
    const key = this.index.lock.find(name) ?? this.pyodideLock.find(name);
    const pkg = key ? this.index.lock.get(key) ?? this.pyodideLock.get(key) : undefined;
    const names = new Set(pkg?.imports ?? []);
    if (/^[A-Za-z_]\w*$/.test(name)) names.add(name);
    return [...names];
  }

  #policyRefusal(key: string, requested: string): string | undefined {
    const who = key === requested ? `'${key}'` : `'${requested}' (package '${key}')`;
    if (this.#deny.has(key)) return `refused by the policy: ${who} is in packages.deny`;
    if (!this.#allow.has("*") && !this.#allow.has(key)) {
      return `refused by the policy: ${who} is not in packages.allow`;
    }
    return undefined;
  }

  async #resolve(
    name: string,
    loaded: ReadonlySet<string>,
    signal?: AbortSignal,
  ): Promise<{ order: Candidate[] } | { kind: PackageFailure["kind"]; reason: string }> {
    const key = this.index.lock.find(name);
    if (key) {
      const refusal = this.#policyRefusal(key, name);
      if (refusal) return { kind: "refused", reason: refusal };
      if (this.index.problem) return { kind: "error", reason: this.index.problem };
      const { order, missing } = this.index.lock.closure(key);
      if (missing.length) {
        return {
          kind: "missing",
          reason: `'${key}' needs ${missing.map((m) => `'${m}'`).join(", ")}, which ` +
            `the lock file of ${this.index.location} does not list`,
        };
      }
      for (const dep of order) {
        const why = this.#policyRefusal(dep, dep);
        if (why) return { kind: "refused", reason: `'${key}' needs '${dep}', which is ${why}` };
      }
      return {
        order: await Promise.all(
          order.filter((k) => !loaded.has(k)).map((k) =>
            this.#candidates.fromLock(this.index.lock, this.index.location, k)
          ),
        ),
      };
    }
    const k = this.pyodideLock.find(name);
    if (k) {
      // A pure-Python package (requests, httpx) the mirror lacks may still come from the index.
      const fromPypi = this.rules.pypi ? await this.#resolvePypi(name, loaded, signal) : undefined;
      if (fromPypi && "order" in fromPypi) return fromPypi;
      return {
        kind: "missing",
        reason: `'${k}' is built for Pyodide but the mirror at ${this.index.location} does not ` +
          `have it; add it with scripts/mirror_packages.ts` +
          (fromPypi && "reason" in fromPypi ? ` (from packages.pypi: ${fromPypi.reason})` : ""),
      };
    }
    if (!this.rules.pypi) {
      return {
        kind: "missing",
        reason: `no package named '${name}' in Pyodide's lock file, and no PyPI index is ` +
          `configured (policy key packages.pypi)`,
      };
    }
    return await this.#resolvePypi(name, loaded, signal);
  }

  /** Follows a pure-Python package and its `Requires-Dist` through the simple index. */
  async #resolvePypi(
    name: string,
    loaded: ReadonlySet<string>,
    signal?: AbortSignal,
  ): Promise<{ order: Candidate[] } | { kind: PackageFailure["kind"]; reason: string }> {
    const order: Candidate[] = [];
    const seen = new Set<string>();
    const visit = async (project: string, specifier: string, via?: string): Promise<void> => {
      const key = canonicalName(project);
      if (seen.has(key) || loaded.has(key)) return;
      seen.add(key);
      if (seen.size > MAX_PYPI_PACKAGES) {
        throw new Unloadable("error", `more than ${MAX_PYPI_PACKAGES} packages needed`);
      }
      const refusal = this.#policyRefusal(key, key);
      if (refusal) {
        throw new Unloadable(
          "refused",
          via ? `'${via}' needs '${key}', which is ${refusal}` : refusal,
        );
      }
      const lockKey = this.index.lock.find(key);
      if (lockKey) {
        for (const k of this.index.lock.closure(lockKey).order) {
          if (!loaded.has(k) && !order.some((c) => c.name === k)) {
            order.push(await this.#candidates.fromLock(this.index.lock, this.index.location, k));
          }
        }
        return;
      }
      const candidate = await this.#candidates.fromPypi(key, specifier, signal);
      if (!candidate) {
        throw new Unloadable(
          "missing",
          via
            ? `'${via}' needs '${key}${specifier}', which ${this.rules.pypi} does not have as a pure-Python wheel`
            : `no package named '${key}' in Pyodide's lock file or as a pure-Python wheel on ${this.rules.pypi}`,
        );
      }
      for (const dep of candidate.depends) {
        const req = parseRequirement(dep);
        if (!req || req.url || (req.marker && !evaluateMarker(req.marker))) continue;
        await visit(req.name, req.specifier, key);
      }
      order.push(candidate);
    };
    try {
      await visit(name, "");
    } catch (err) {
      const kind = err instanceof Unloadable ? err.kind : "error";
      return { kind, reason: (err as Error).message };
    }
    return { order };
  }
}

class Unloadable extends Error {
  constructor(readonly kind: PackageFailure["kind"], message: string) {
    super(message);
  }
}
