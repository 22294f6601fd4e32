/** The hex sha256 of some bytes: wheel checks, cache keys, snapshot identity. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return new Uint8Array(digest).toHex();
}

/** Whether two byte strings are equal, in time that depends on `expected`'s length only. */
export function sameBytes(expected: Uint8Array, given: Uint8Array): boolean {
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ (given[i] ?? 0);
  return diff === 0;
}
