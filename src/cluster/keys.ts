/**
 * The keys instances trust each other with, derived from the store's secret (`MOAT_STORE_KEY`, or
 * the key generated into the cache on one machine). Every instance of a deployment has that
 * secret already; nothing else does, clients included. Each use has a key of its own (HKDF with
 * its own label), so a signature made for one can never pass for another.
 */

/** HMAC-SHA-256 keys: one signs heartbeat records, one signs forwarded requests. */
export interface PeerKeys {
  /** Signs an instance's heartbeat record (its id and address) in the store. */
  records: CryptoKey;
  /** Signs a request one instance forwards to another (`hop.ts`). */
  hops: CryptoKey;
}

const encoder = new TextEncoder();

async function hmacKey(master: CryptoKey, label: string): Promise<CryptoKey> {
  return await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: encoder.encode(label) },
    master,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign", "verify"],
  );
}

/** The peer keys for `secret` (at least 16 characters, as the store requires). */
export async function peerKeys(secret: string): Promise<PeerKeys> {
  const master = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, [
    "deriveKey",
  ]);
  return {
    records: await hmacKey(master, "moat instance record"),
    hops: await hmacKey(master, "moat forward"),
  };
}

/** HMAC of `text`, base64url. */
export async function sign(key: CryptoKey, text: string): Promise<string> {
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(text)));
  return mac.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** Whether `mac` (base64url) is the HMAC of `text`; compared in constant time by WebCrypto. */
export async function verify(key: CryptoKey, text: string, mac: string): Promise<boolean> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = Uint8Array.fromBase64(mac, { alphabet: "base64url" });
  } catch {
    return false;
  }
  return await crypto.subtle.verify("HMAC", key, bytes, encoder.encode(text));
}
