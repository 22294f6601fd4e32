/**
 * The Deno KV backend in a worker of its own. A checkpoint of a session with 64 MB of files is a
 * thousand 60 kB KV values; reading one back allocates and copies each, about 1.3 CPU seconds
 * here (`scripts/bench.ts`'s durable rows, the soak's restores). On the thread that serves HTTP
 * that time is taken from every answer, `/health` included. In the worker it is not: the records
 * move between the threads without a copy (`movable`), and the main thread only routes them.
 */
import { CheckpointRejected } from "../codec/rejected.ts";
import { CODEC_DIR, PRIORITY_MODULE, STORE_DIR, STORE_WORKER_URL } from "../paths.ts";
import { prioritySys } from "../sandbox/worker_permissions.ts";
import type { Backend } from "./store.ts";
import {
  type BackendOp,
  buffersIn,
  type StoreReply,
  type StoreRequest,
} from "./thread_messages.ts";
import { StoreUnavailable } from "./unavailable.ts";
import { WorkerRequests } from "../sandbox/worker_requests.ts";

/** The error a reply carries, as the class callers check for. */
function errorOf(reply: Extract<StoreReply, { ok: false }>): Error {
  const { rejected } = reply;
  if (rejected) return new CheckpointRejected(rejected.reason, rejected.record, rejected.detail);
  return new StoreUnavailable(reply.message);
}

/**
 * Opens the KV file at `path` in a worker that may read and write only its directory (and read
 * its own modules). A worker that dies fails what it was doing with `StoreUnavailable`; the next
 * operation starts another.
 * @throws StoreUnavailable when the file cannot be opened.
 */
export async function kvOffThread(path: string, prefix: string): Promise<Backend> {
  let opened: Promise<unknown> | undefined;
  const requests = new WorkerRequests<StoreRequest, StoreReply>({
    what: `Deno KV ${path}: the store's worker`,
    create: () =>
      new Worker(STORE_WORKER_URL, {
        type: "module",
        name: "moat-store",
        // security: its own modules, the priority module, and the KV file as the server holds it
        // (SQLite opens the file's -wal and -shm companions itself, unchecked, as on the main
        // thread)
        deno: {
          permissions: {
            read: [STORE_DIR, CODEC_DIR, PRIORITY_MODULE, path],
            write: [path],
            net: false,
            env: false,
            run: false,
            ffi: false,
            sys: prioritySys(), // its own thread's priority, lowered at start, then revoked
            import: false,
          },
        },
      }),
    settle: (reply) => reply.ok ? { value: reply.value } : { error: errorOf(reply) },
    failure: (message) => new StoreUnavailable(message),
    // The next operation starts another worker, which opens the file first.
    onGone: () => opened = undefined,
  });
  const open = () => opened ??= requests.ask({ open: { path, prefix } });
  const call = async (op: BackendOp, args: unknown[]): Promise<unknown> => {
    await open();
    return requests.ask({ op, args }, buffersIn(args));
  };

  await open().catch((err) => {
    requests.fail(String(err));
    throw err;
  });
  const backend = {
    kind: "kv",
    shared: false,
    async close() {
      if (requests.running) await call("close", []).catch(() => {});
      requests.fail("the store is closed");
    },
  } as Backend;
  const ops: BackendOp[] = [
    "putCheckpoint",
    "getCheckpoint",
    "getMeta",
    "deleteSession",
    "listMeta",
    "countSessions",
    "hasBase",
    "putBase",
    "getBase",
    "putLink",
    "getLink",
    "deleteLinks",
    "acquireLease",
    "renewLease",
    "releaseLease",
    "leaseHolder",
    "takeLease",
    "putInstance",
    "getInstance",
    "listInstances",
    "deleteInstance",
    "ping",
  ];
  for (const op of ops) {
    (backend as unknown as Record<string, unknown>)[op] = (...args: unknown[]) => call(op, args);
  }
  return backend;
}
