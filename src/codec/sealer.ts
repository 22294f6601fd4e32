/**
 * Who seals and unseals records (`crypto.ts`). Checkpoints, links and bases are sealed and
 * unsealed in a worker of their own (`worker.ts`), their bytes moved there and back rather than
 * copied, so compressing, encrypting and copying a checkpoint never holds the thread that serves
 * HTTP and routes calls. Metadata (a small JSON record), and any record under 64 KiB that is
 * read back, is handled in place: the trip would cost more than the work.
 */
import { deriveKey, type RecordKind, seal, type StoreKey, unseal } from "./crypto.ts";
import { mergeSealed } from "./merge.ts";
import { CheckpointRejected, type RejectReason } from "./rejected.ts";
import { movable } from "./transfer.ts";
import { CODEC_DIR, DELTA_MODULE, PRIORITY_MODULE, SEALER_WORKER_URL } from "../paths.ts";
import { prioritySys } from "../sandbox/worker_permissions.ts";
import { WorkerRequests } from "../sandbox/worker_requests.ts";

/** Records read back at least this big are unsealed off the main thread. */
export const OFF_THREAD_BYTES = 64 * 1024;

/** Options of one seal: bytes bound into its authentication, and whether to compress. */
export interface SealOptions {
  extra?: Uint8Array;
  compress?: boolean;
  /** The caller gives `plain` away: its buffer may be moved to the worker (and be emptied). */
  handOver?: boolean;
}

/** Seals and unseals records under one store key. */
export interface Sealer {
  seal(
    kind: RecordKind,
    name: string,
    plain: Uint8Array,
    options?: SealOptions,
  ): Promise<Uint8Array>;
  /** `sealed` is the caller's to give away: backends return fresh bytes on every read. */
  unseal(
    kind: RecordKind,
    name: string,
    sealed: Uint8Array,
    options?: { extra?: Uint8Array },
  ): Promise<Uint8Array>;
  /** Merges sealed links (chain order, `names` as sealed) into one sealed as `name`. */
  merge(kind: "link", names: string[], sealed: Uint8Array[], name: string): Promise<Uint8Array>;
  close(): void;
}

/** A request to the worker; `secret` goes with the first, so the key never waits in a queue. */
export type SealerRequest =
  | (
    & { id: number; kind: RecordKind; name: string; bytes: Uint8Array; extra?: Uint8Array }
    & ({ op: "seal"; compress: boolean } | { op: "unseal" })
  )
  | { id: number; op: "merge"; names: string[]; links: Uint8Array[]; name: string };

/** The worker's answer: the bytes, or why a record was refused, or what failed. */
export type SealerReply =
  | { id: number; ok: true; bytes: Uint8Array }
  | { id: number; ok: false; rejected?: { reason: RejectReason; record: string }; message: string };

/** Seals in this thread only: for tests and the in-memory store. */
export function sealerInThread(key: StoreKey): Sealer {
  return {
    seal: (kind, name, plain, options = {}) => seal(key, kind, name, plain, options),
    unseal: (kind, name, sealed, options = {}) => unseal(key, kind, name, sealed, options),
    merge: (_kind, names, sealed, name) => mergeSealed(key, names, sealed, name),
    close: () => {},
  };
}

/**
 * Seals every record but metadata in a worker started at once (and again after it died), and
 * unseals big ones there. The worker may read its own modules (`src/codec/`) and the delta
 * format it merges, nothing else.
 */
export async function sealerOffThread(secret: string): Promise<Sealer> {
  const key = await deriveKey(secret);
  const local = sealerInThread(key);
  const requests = new WorkerRequests<SealerRequest, SealerReply>({
    what: "the sealing worker",
    create: () => {
      const worker = new Worker(SEALER_WORKER_URL, {
        type: "module",
        name: "moat-sealer",
        // security: nothing but reading its own modules (src/codec/, the delta format it merges,
        // and how it lowers its priority)
        deno: {
          permissions: {
            read: [CODEC_DIR, DELTA_MODULE, PRIORITY_MODULE],
            write: false,
            net: false,
            env: false,
            run: false,
            ffi: false,
            sys: prioritySys(), // its own thread's priority, lowered at start, then revoked
            import: false,
          },
        },
      });
      worker.postMessage({ secret });
      return worker;
    },
    settle: (reply) => {
      if (reply.ok) return { value: reply.bytes };
      const { rejected } = reply;
      return {
        error: rejected
          ? new CheckpointRejected(rejected.reason, rejected.record, reply.message)
          : new Error(`sealing failed: ${reply.message}`),
      };
    },
    failure: (message) => new Error(message),
  });
  const ask = (request: Parameters<typeof requests.ask>[0], moved: Uint8Array[]) =>
    requests.ask<Uint8Array>(request, moved.flatMap(movable));

  // Started now, not on the first big record: that is a session's first checkpoint, whose base
  // (tens of MB) is sealed then too, and a worker's start would add to its time.
  requests.start();
  return {
    seal(kind, name, plain, options = {}) {
      if (kind === "meta") return local.seal(kind, name, plain, options);
      const { extra, compress = true, handOver = false } = options;
      const request = {
        op: "seal" as const,
        kind,
        name,
        bytes: plain,
        extra,
        compress,
      };
      return ask(request, handOver ? [plain] : []);
    },
    unseal(kind, name, sealed, options = {}) {
      if (sealed.byteLength < OFF_THREAD_BYTES) return local.unseal(kind, name, sealed, options);
      return ask({ op: "unseal", kind, name, bytes: sealed, ...options }, [sealed]);
    },
    // Always in the worker: the merged delta can be big whatever the links' sizes.
    merge: (_kind, names, links, name) => ask({ op: "merge", names, links, name }, links),
    close: () => requests.fail("the store is closed"),
  };
}
