import assert from "node:assert/strict";
import { deriveKey, seal, storeSecret, unseal } from "./crypto.ts";
import { CheckpointRejected } from "./rejected.ts";

const secret = "0123456789abcdef-test";

async function rejects(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof CheckpointRejected);
    assert.equal(err.reason, reason, err.message);
    return true;
  });
}

Deno.test("a sealed record opens only with its key, kind and name", async () => {
  const key = await deriveKey(secret);
  const plain = new TextEncoder().encode("x = 41\n".repeat(1000));
  const sealed = await seal(key, "checkpoint", "s-1", plain);
  assert.ok(sealed.byteLength < plain.byteLength / 10, "compressed before encryption");
  assert.deepEqual(await unseal(key, "checkpoint", "s-1", sealed), plain);
  await rejects(unseal(key, "checkpoint", "s-2", sealed), "tampered");
  await rejects(unseal(key, "base", "s-1", sealed), "tampered");
  await rejects(unseal(await deriveKey(`${secret}!`), "checkpoint", "s-1", sealed), "wrong-key");
});

Deno.test("a modified, cut or relabelled envelope is refused", async () => {
  const key = await deriveKey(secret);
  const sealed = await seal(key, "meta", "s", new Uint8Array([1, 2, 3]), { compress: false });
  for (let i = 0; i < sealed.byteLength; i++) {
    const bad = sealed.slice();
    bad[i] ^= 0x80;
    await assert.rejects(unseal(key, "meta", "s", bad), CheckpointRejected, `byte ${i}`);
  }
  await rejects(unseal(key, "meta", "s", sealed.subarray(0, 40)), "truncated");
  await rejects(unseal(key, "meta", "s", sealed.subarray(0, sealed.byteLength - 1)), "tampered");
  const bumped = sealed.slice();
  bumped[0] = 9;
  await rejects(unseal(key, "meta", "s", bumped), "format");
});

Deno.test("extra authenticated bytes bind a record to another", async () => {
  const key = await deriveKey(secret);
  const sealed = await seal(key, "checkpoint", "s", new Uint8Array(10), {
    extra: new Uint8Array([1]),
  });
  assert.equal(
    (await unseal(key, "checkpoint", "s", sealed, { extra: new Uint8Array([1]) })).length,
    10,
  );
  await rejects(unseal(key, "checkpoint", "s", sealed, { extra: new Uint8Array([2]) }), "tampered");
});

Deno.test("bytes in a SharedArrayBuffer (the boot snapshot) can be sealed", async () => {
  const key = await deriveKey(secret);
  const shared = new Uint8Array(new SharedArrayBuffer(1000)).fill(7);
  const sealed = await seal(key, "base", "h", shared);
  assert.deepEqual(await unseal(key, "base", "h", sealed), new Uint8Array(1000).fill(7));
});

Deno.test("a store key shorter than 16 characters is refused", async () => {
  await assert.rejects(deriveKey("short"), /MOAT_STORE_KEY must be at least 16 characters/);
});

Deno.test("without MOAT_STORE_KEY a key is generated once, mode 0600, and reused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/store.key`;
    const first = await storeSecret(undefined, file);
    assert.equal(await storeSecret(undefined, file), first);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert.ok(first.length >= 40);
    assert.equal(await storeSecret("configured-secret-value", file), "configured-secret-value");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
