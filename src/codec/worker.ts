/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * The sealing worker (`sealer.ts`): seals and unseals big records off the main thread, under the
 * key derived from the secret its first message carries. Its answers move their bytes back.
 */
import { deriveKey, seal, type StoreKey, unseal } from "./crypto.ts";
import type { SealerReply, SealerRequest } from "./sealer.ts";
import { movable } from "./transfer.ts";
import { CheckpointRejected } from "./rejected.ts";
import { mergeSealed } from "./merge.ts";
import { lowerPriority } from "../worker/priority.ts";

// Below the thread that serves HTTP, as interpreters are (src/worker/priority.ts): compressing and
// sealing a big record must not delay answers. Then the permission goes.
lowerPriority();
Deno.permissions.revokeSync({ name: "sys" });

let key: Promise<StoreKey> | undefined;

self.onmessage = async (e: MessageEvent<SealerRequest | { secret: string }>) => {
  const msg = e.data;
  if ("secret" in msg) {
    key = deriveKey(msg.secret);
    return;
  }
  let reply: SealerReply;
  try {
    const k = await key!;
    const bytes = msg.op === "merge"
      ? await mergeSealed(k, msg.names, msg.links, msg.name)
      : msg.op === "seal"
      ? await seal(k, msg.kind, msg.name, msg.bytes, { extra: msg.extra, compress: msg.compress })
      : await unseal(k, msg.kind, msg.name, msg.bytes, { extra: msg.extra });
    reply = { id: msg.id, ok: true, bytes };
  } catch (err) {
    const message = err instanceof CheckpointRejected ? err.detail : String(err);
    const rejected = err instanceof CheckpointRejected
      ? { reason: err.reason, record: err.record }
      : undefined;
    reply = { id: msg.id, ok: false, rejected, message };
  }
  self.postMessage(reply, reply.ok ? movable(reply.bytes) : []);
};
