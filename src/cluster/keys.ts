/**
 * The keys instances trust each other with, derived from the store's secret (`MOAT_STORE_KEY`, or
 * the key generated into the cache on one machine). Every instance of a deployment has that
 * secret already; nothing else does, clients included. Each use has a key of its own (HKDF with
 * its own label), so a signature made for one can never pass for another. Signing is node:crypto's
 * HMAC, synchronous: a forwarded call signs and verifies once each, on the hot path.
 */
import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";

/** HMAC-SHA-256 keys (raw bytes): one signs heartbeat records, one signs forwarded requests. */
export interface PeerKeys {
  /** Signs an instance's heartbeat record (its id and address) in the store. */
  records: Uint8Array;
  /** Signs a request one instance forwards to another (`hop.ts`). */
  hops: Uint8Array;
}

const encoder = new TextEncoder();

async function derive(master: CryptoKey, label: string): Promise<Uint8Array> {
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: encoder.encode(label) },
    master,
    256,
  );
  return new Uint8Array(bits);
}

/** The peer keys for `secret` (at least 16 characters, as the store requires). */
export async function peerKeys(secret: string): Promise<PeerKeys> {
  const master = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, [
    "deriveBits",
  ]);
  return {
    records: await derive(master, "moat instance record"),
    hops: await derive(master, "moat forward"),
  };
}

/** HMAC-SHA-256 of `text`, base64url. */
export function sign(key: Uint8Array, text: string): string {
  return createHmac("sha256", key).update(text).digest("base64url");
}

/** Whether `mac` (base64url) is the HMAC of `text`, compared in constant time. */
export function verify(key: Uint8Array, text: string, mac: string): boolean {
  const given = Buffer.from(mac, "base64url");
  const expected = createHmac("sha256", key).update(text).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}
