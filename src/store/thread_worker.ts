/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * The store's worker (`thread.ts`): runs the Deno KV backend, one operation per message, and
 * moves the bytes it reads back to the main thread rather than copying them.
 */
import { CheckpointRejected } from "../codec/rejected.ts";
import { lowerPriority } from "../worker/priority.ts";
import { KvBackend } from "./kv.ts";
import { buffersIn, type StoreReply, type StoreRequest } from "./thread_messages.ts";

// Below the thread that serves HTTP, as interpreters and the sealer are (src/worker/priority.ts):
// reading a big record back takes about a CPU second. Then the permission goes.
lowerPriority();
Deno.permissions.revokeSync({ name: "sys" });

let backend: Promise<KvBackend> | undefined;

self.onmessage = async (e: MessageEvent<StoreRequest>) => {
  const msg = e.data;
  let reply: StoreReply;
  try {
    if ("open" in msg) {
      backend = KvBackend.open(msg.open.path, msg.open.prefix);
      await backend;
      reply = { id: msg.id, ok: true, value: undefined };
    } else {
      const kv = await backend!;
      const fn = kv[msg.op] as (...args: unknown[]) => Promise<unknown>;
      reply = { id: msg.id, ok: true, value: await fn.apply(kv, msg.args) };
    }
  } catch (err) {
    const rejected = err instanceof CheckpointRejected
      ? { reason: err.reason, record: err.record, detail: err.detail }
      : undefined;
    reply = { id: msg.id, ok: false, message: (err as Error)?.message ?? String(err), rejected };
  }
  self.postMessage(reply, reply.ok ? buffersIn(reply.value) : []);
};
