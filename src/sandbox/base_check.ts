/**
 * Which base a checkpoint was taken against. Apart from `delta_base.ts`, which boots an
 * interpreter to make a base, so that the interpreter can check a checkpoint before it restores
 * it without the two importing each other.
 */
import { sha256Hex } from "../digest.ts";
import { readPrefix } from "../worker/checkpoint/format.ts";
import { messageOf } from "../worker/errors.ts";
import { BootError } from "./boot_error.ts";

const ids = new WeakMap<Uint8Array, Promise<string>>();

/** sha256 (hex) of a snapshot's bytes, computed once per snapshot in this process. */
export function snapshotId(snapshot: Uint8Array): Promise<string> {
  let id = ids.get(snapshot);
  if (!id) {
    // WebCrypto takes no SharedArrayBuffer view: hash a copy, once.
    id = sha256Hex(snapshot.slice());
    ids.set(snapshot, id);
  }
  return id;
}

/** A delta applied to another base would be garbage memory: refuse it, saying which base. */
export async function checkBase(checkpoint: Uint8Array, base: Uint8Array | undefined) {
  if (!base) throw new BootError("restoring a checkpoint needs the base it was taken against");
  let wanted: string;
  try {
    wanted = readPrefix(checkpoint).baseId;
  } catch (err) {
    throw new BootError(`the checkpoint is unreadable: ${messageOf(err)}`);
  }
  const have = await snapshotId(base);
  if (wanted !== have) {
    throw new BootError(
      `the checkpoint was taken against base ${wanted.slice(0, 12)}, not this one ` +
        `(${have.slice(0, 12)}): load that base to restore it`,
    );
  }
}
