/**
 * Opens the session store `MOAT_STORE` names, sealed with the key `MOAT_STORE_KEY` gives (or, on
 * a single machine, the one generated into the cache directory). The one entry point callers need.
 */
import { deriveKey, storeSecret } from "../codec/crypto.ts";
import { KvBackend } from "./kv.ts";
import { MemoryBackend } from "./memory.ts";
import { RedisBackend } from "./redis.ts";
import { sealedStore } from "./sealed.ts";
import { kvOffThread } from "./thread.ts";
import { sealerOffThread } from "../codec/sealer.ts";
import { defaultKvPath, type StoreSetting } from "./setting.ts";
import type { CheckpointRejected, Store } from "./store.ts";

export { describeStore, parseStoreSetting, type StoreSetting } from "./setting.ts";

/** Options of `openStore`; the values come from `readConfig` (`src/config.ts`). */
export interface OpenOptions {
  /** `MOAT_STORE`, parsed. */
  setting: StoreSetting;
  /** `MOAT_STORE_KEY`: required for Redis; generated into `<cacheDir>store.key` otherwise. */
  key?: string;
  /** `MOAT_STORE_PREFIX`: key prefix in Redis and in the KV file. @default {"moat"} */
  prefix?: string;
  /** The cache directory (ends in `/`): the default KV file and the generated key live there. */
  cacheDir: string;
  /** Deadline of one Redis operation. @default {2000} */
  opTimeoutMs?: number;
  /** Connection-state lines (Redis lost, Redis back). */
  log?: (line: string) => void;
  /** Told about each listed record that failed authentication (for a `security` audit event). */
  onRejected?: (err: CheckpointRejected) => void;
  /**
   * Deploy mode: `kv` without a path opens the platform's database (`Deno.openKv()` with no
   * path), not a file in the cache directory, and the key must be given.
   */
  platformKv?: boolean;
}

/**
 * Opens the store. A Redis that is down does not fail this: operations reject with
 * `StoreUnavailable` until it is back (`ping()` tells readiness).
 * @throws RangeError when Redis is named without `MOAT_STORE_KEY`, StoreUnavailable when the KV
 * file cannot be opened.
 */
export async function openStore(options: OpenOptions): Promise<Store> {
  const { setting, cacheDir } = options;
  const prefix = options.prefix ?? "moat";
  const seal = { onRejected: options.onRejected };
  switch (setting.kind) {
    case "memory": {
      const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
      return sealedStore(new MemoryBackend(), await deriveKey(secret), seal);
    }
    case "kv": {
      const platform = options.platformKv && !setting.path;
      if (platform && !options.key) {
        throw new RangeError("MOAT_STORE_KEY must be set to use the platform's Deno KV database");
      }
      // On the platform's disk the cache directory may not be writable, and is not needed.
      if (!platform) await Deno.mkdir(cacheDir, { recursive: true });
      const secret = await storeSecret(options.key, `${cacheDir}store.key`);
      const path = platform ? undefined : setting.path ?? defaultKvPath(cacheDir);
      // The platform's database stays on this thread: a worker there is not known to reach it.
      const backend = path ? await kvOffThread(path, prefix) : await KvBackend.open(path, prefix);
      return sealedStore(backend, await sealerOffThread(secret), seal);
    }
    case "redis": {
      if (!options.key) {
        throw new RangeError(
          `MOAT_STORE_KEY must be set when MOAT_STORE is a shared Redis (${setting.host}): every ` +
            `instance needs the same key (generate one with 'openssl rand -base64 32')`,
        );
      }
      const sealer = await sealerOffThread(options.key);
      const backend = await RedisBackend.open({
        url: setting.url,
        prefix,
        opTimeoutMs: options.opTimeoutMs,
        log: options.log,
      });
      return sealedStore(backend, sealer, seal);
    }
  }
}
