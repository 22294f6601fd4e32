/**
 * Sealing of stored records: compressed, then encrypted and authenticated with AES-256-GCM under
 * a key derived from `MOAT_STORE_KEY`, so whoever can write to the store (another program sharing
 * a Redis) can neither read a session's state nor plant one.
 *
 * Key: any secret of at least 16 characters (e.g. `openssl rand -base64 32`); its UTF-8 bytes go
 * through HKDF-SHA-256, so hex, base64 and passphrases all work. Each record gets its own AES key
 * (HKDF with a random 16-byte salt) and a random 12-byte IV, so one long-lived key never meets the
 * GCM limit on random nonces.
 *
 * Envelope: version (1 byte) · flags (1: 0 = stored, 1 = gzip (older records), 2 = zstd) · key id
 * (4) · salt (16) · IV (12) · ciphertext with its 16-byte tag. The header, the record's kind and name (session id or hash)
 * and any caller-given bytes are additional authenticated data: a record moved to another
 * session, or re-labelled, fails authentication.
 */
import { CheckpointRejected } from "./rejected.ts";
import { compress as zstd, decompress as unzstd } from "./zstd.ts";

const VERSION = 1;
const GZIP = 1;
const ZSTD = 2;
const HEADER = 2 + 4 + 16 + 12;
const TAG = 16;
const encoder = new TextEncoder();

/** What a record is; part of its authenticated data. */
export type RecordKind = "checkpoint" | "meta" | "base" | "link";

/** A master key: derives each record's AES key, and a short id that tells keys apart. */
export interface StoreKey {
  master: CryptoKey;
  /** 4 bytes derived from the key, stored in each envelope to report "written under another key". */
  id: Uint8Array;
}

/** Derives the store key from a secret of 16+ characters (`MOAT_STORE_KEY`). */
export async function deriveKey(secret: string): Promise<StoreKey> {
  if (secret.length < 16) {
    throw new RangeError("MOAT_STORE_KEY must be at least 16 characters (openssl rand -base64 32)");
  }
  const master = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, [
    "deriveKey",
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: encoder.encode("moat key id") },
    master,
    32,
  );
  return { master, id: new Uint8Array(bits) };
}

/**
 * The secret to derive the key from: `MOAT_STORE_KEY` when set; otherwise, for a store only this
 * machine uses, one generated once into `keyFile` (mode 0600) and read back on later starts.
 */
export async function storeSecret(
  configured: string | undefined,
  keyFile: string,
): Promise<string> {
  if (configured) return configured;
  const fresh = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
  try {
    await Deno.writeTextFile(keyFile, `${fresh}\n`, { createNew: true, mode: 0o600 });
    return fresh;
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
  const stored = (await Deno.readTextFile(keyFile)).trim();
  if (stored.length < 16) throw new RangeError(`The store key in ${keyFile} is too short`);
  return stored;
}

function aadFor(header: Uint8Array, kind: RecordKind, name: string, extra?: Uint8Array) {
  const label = encoder.encode(JSON.stringify(["moat-store", kind, name]));
  return concat([header, label, extra ?? new Uint8Array()]);
}

function recordKey(
  key: StoreKey,
  salt: Uint8Array<ArrayBuffer>,
  kind: RecordKind,
): Promise<CryptoKey> {
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: encoder.encode(`moat ${kind}`) },
    key.master,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** Compresses (unless told not to), encrypts and authenticates `plain` as record `kind`/`name`. */
export async function seal(
  key: StoreKey,
  kind: RecordKind,
  name: string,
  plain: Uint8Array,
  options: { extra?: Uint8Array; compress?: boolean } = {},
): Promise<Uint8Array> {
  const packed = (options.compress ?? true) ? zstd(plain) : undefined;
  const header = new Uint8Array(HEADER);
  header[0] = VERSION;
  header[1] = packed ? ZSTD : 0;
  header.set(key.id, 2);
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  header.set(salt, 6);
  header.set(iv, 22);
  const body = packed ?? own(plain);
  const cipher = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: aadFor(header, kind, name, options.extra) },
    await recordKey(key, salt, kind),
    body,
  );
  return concat([header, new Uint8Array(cipher)]);
}

/** Authenticates, decrypts and decompresses a sealed record; throws `CheckpointRejected`. */
export async function unseal(
  key: StoreKey,
  kind: RecordKind,
  name: string,
  sealed: Uint8Array,
  options: { extra?: Uint8Array } = {},
): Promise<Uint8Array> {
  const record = `${kind} ${name}`;
  if (sealed.byteLength < HEADER + TAG) {
    throw new CheckpointRejected("truncated", record, `${sealed.byteLength} bytes is too short`);
  }
  const header = sealed.subarray(0, HEADER);
  if (header[0] !== VERSION || ![0, GZIP, ZSTD].includes(header[1])) {
    throw new CheckpointRejected("format", record, `unknown format ${header[0]}/${header[1]}`);
  }
  if (!header.subarray(2, 6).every((b, i) => b === key.id[i])) {
    throw new CheckpointRejected(
      "wrong-key",
      record,
      "it was written under another MOAT_STORE_KEY",
    );
  }
  let body: Uint8Array<ArrayBuffer>;
  try {
    const plain = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: header.slice(22, 34),
        additionalData: aadFor(header, kind, name, options.extra),
      },
      await recordKey(key, header.slice(6, 22), kind),
      own(sealed.subarray(HEADER)),
    );
    body = new Uint8Array(plain);
  } catch {
    throw new CheckpointRejected(
      "tampered",
      record,
      "it failed authentication: modified, cut short, or copied from another session",
    );
  }
  if (!header[1]) return body;
  try {
    if (header[1] === ZSTD) return unzstd(body);
    return await transform(body, new DecompressionStream("gzip"));
  } catch (err) {
    throw new CheckpointRejected("corrupt", record, `it does not decompress: ${err}`);
  }
}

async function transform(
  bytes: Uint8Array,
  stream: DecompressionStream,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Blob([own(bytes)]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

/** WebCrypto refuses views of a SharedArrayBuffer (the boot snapshot is one): copy those. */
function own(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? bytes as Uint8Array<ArrayBuffer> : bytes.slice();
}

/** Joins byte arrays into one. */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
