/**
 * Compaction of a session's chain: sealed links unsealed, merged into one delta and sealed again,
 * all on the thread that runs it (the sealing worker), so no plain link reaches the main thread.
 */
import { seal, type StoreKey, unseal } from "./crypto.ts";
import { mergeDeltas } from "../worker/checkpoint/delta.ts";

/** Unseals `sealed` (named `names`, in chain order), merges them, seals the result as `name`. */
export async function mergeSealed(
  key: StoreKey,
  names: string[],
  sealed: Uint8Array[],
  name: string,
): Promise<Uint8Array> {
  const deltas: Uint8Array[] = [];
  for (let i = 0; i < sealed.length; i++) {
    deltas.push(await unseal(key, "link", names[i], sealed[i]));
  }
  return await seal(key, "link", name, mergeDeltas(deltas));
}
