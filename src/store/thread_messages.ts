/** The messages between the store's proxy (`thread.ts`) and its worker (`thread_worker.ts`). */
import type { RejectReason } from "../codec/rejected.ts";
import { movable } from "../codec/transfer.ts";
import type { Backend } from "./store.ts";

/** The backend's operations, which the worker runs by name. */
export type BackendOp = Exclude<keyof Backend, "kind" | "shared">;

/** What the main thread asks: open the file first, then operations by name. */
export type StoreRequest =
  | { id: number; open: { path: string; prefix: string } }
  | { id: number; op: BackendOp; args: unknown[] };

/** The worker's answer: the operation's value, or the error to throw again on this side. */
export type StoreReply =
  | { id: number; ok: true; value: unknown }
  | {
    id: number;
    ok: false;
    message: string;
    rejected?: { reason: RejectReason; record: string; detail: string };
  };

/** The buffers of every whole-buffer byte array in `value`, each once, to move them with it. */
export function buffersIn(value: unknown): Transferable[] {
  const found = new Set<Transferable>();
  const walk = (v: unknown) => {
    if (v instanceof Uint8Array) { for (const b of movable(v)) found.add(b); }
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(value);
  return [...found];
}
