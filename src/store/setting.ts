/**
 * `MOAT_STORE`, parsed: which backend, and the one file or host it touches (the permission flags
 * grant exactly that). Kept free of backend imports so `config.ts` and the flags script can use
 * it cheaply.
 */

/** Where sessions are stored. */
export type StoreSetting =
  | { kind: "memory" }
  /** `path` is absolute; undefined means the default file in the cache directory. */
  | { kind: "kv"; path?: string }
  /** `host` is `hostname:port`, as the `--allow-net` flag names it. */
  | { kind: "redis"; url: string; host: string; db: number };

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

/** The store file when `MOAT_STORE` is `kv`: `<cacheDir>store.kv`. */
export function defaultKvPath(cacheDir: string): string {
  return `${cacheDir.replace(/\/?$/, "/")}store.kv`;
}

/**
 * Parses `MOAT_STORE`: `kv` (default), `kv:PATH` (relative to the Moat directory),
 * `redis://host:port/db` (`rediss://` for TLS), or `memory`.
 * @throws RangeError naming `MOAT_STORE` when the value is none of these.
 */
export function parseStoreSetting(value: string | undefined): StoreSetting {
  const text = (value ?? "").trim();
  if (text === "" || text === "kv") return { kind: "kv" };
  if (text === "memory") return { kind: "memory" };
  if (text.startsWith("kv:") && text.length > 3) {
    const path = decodeURIComponent(new URL(text.slice(3), `file://${ROOT}`).pathname);
    if (path.endsWith("/")) throw bad(text, "kv:PATH must name a file, not a directory");
    return { kind: "kv", path };
  }
  if (/^rediss?:\/\//.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw bad(text, "not a valid URL");
    }
    if (!url.hostname) throw bad(text, "the Redis URL needs a host");
    const db = url.pathname.replace(/^\//, "") || "0";
    if (!/^\d+$/.test(db)) throw bad(text, "the database after the host must be a number");
    return {
      kind: "redis",
      url: text,
      host: `${url.hostname}:${url.port || "6379"}`,
      db: Number(db),
    };
  }
  throw bad(text, "use kv, kv:PATH, redis://host:port/db or memory");
}

function bad(value: string, why: string): RangeError {
  const shown = value.replace(/\/\/[^@/]*@/, "//***@");
  return new RangeError(`MOAT_STORE '${shown}' cannot be used: ${why}`);
}

/** One line for the start-up log; never shows a Redis password. */
export function describeStore(
  setting: StoreSetting,
  cacheDir: string,
  prefix: string,
  platformKv = false,
): string {
  switch (setting.kind) {
    case "memory":
      return "session store: memory (nothing survives a restart)";
    case "kv":
      if (platformKv && !setting.path) return "session store: Deno KV (the platform's database)";
      return `session store: Deno KV at ${setting.path ?? defaultKvPath(cacheDir)}`;
    case "redis":
      return `session store: Redis at ${setting.host} db ${setting.db} (prefix '${prefix}')`;
  }
}
