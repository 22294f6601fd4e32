/**
 * The bytes of one checkpoint: a JSON description and binary sections (Pyodide's snapshot
 * header, file contents; the memory is in deltas stored beside it). Not compressed here: the
 * sealing worker compresses off the interpreter's thread. Pure; shared by the worker that writes
 * a checkpoint and the one that restores it, and readable by the host (`readPrefix`).
 */
import { decompress } from "./delta.ts";

const MAGIC = "MOATCKP1";
/** Bump when the meaning of a field changes; a restore refuses other versions by name. */
export const CHECKPOINT_VERSION = 1;

/** Something a checkpoint could not carry over, named so no loss is ever silent. */
export interface Lost {
  what: string;
  why: string;
}

/** A file, directory or symlink the session made or changed, relative to a fresh boot. */
export interface FileRecord {
  path: string;
  kind: "file" | "dir" | "link";
  mode: number;
  mtime: number;
  /** Section holding a file's bytes. */
  section?: number;
  /** A symlink's target. */
  target?: string;
}

/** A file descriptor Python holds open, reopened at the same number and position. */
export interface StreamRecord {
  fd: number;
  path: string;
  flags: number;
  position: number;
}

/** A compiled extension (`.so`) and where it was loaded: replayed at exactly that place. */
export interface DylibRecord {
  path: string;
  global: boolean;
  memoryBase: number;
  tableBase: number;
  tableSize: number;
  /** Every open dlopen handle (a pointer into memory) that refers to it. */
  handles: number[];
}

/** A function table slot filled after boot with a library's export (e.g. by dlsym). */
export interface TableEntry {
  index: number;
  path: string;
  symbol: string;
}

/** Everything a restore needs besides the base snapshot, in JSON. */
export interface CheckpointMeta {
  version: number;
  /** sha256 (hex) of the boot snapshot the memory delta is against. */
  baseId: string;
  /** Pyodide's snapshot header (magic, build id, hiwire state): section index. */
  headerSection: number;
  /**
   * Checkpoints written before memory deltas were stored apart: the delta's section index. Now
   * absent: the memory is the base with the session's chain of deltas written over it.
   */
  deltaSection?: number;
  lost: Lost[];
  /** Pyodide's `loadedPackages`: name → source. */
  packages: Record<string, string>;
  files: FileRecord[];
  /** Paths of a fresh boot the session removed. */
  removed: string[];
  streams: StreamRecord[];
  dylibs: DylibRecord[];
  /** The function table's length at the checkpoint and the slots filled after boot. */
  table: { length: number; bootLength: number; entries: TableEntry[] };
}

/** A checkpoint that is not one, is of another version, or is cut short. */
export class CheckpointFormatError extends Error {
  override name = "CheckpointFormatError";
}

/**
 * Layout: "MOATCKP1", u32 version, the base id (64 hex characters, so a host can check it without
 * reading anything else), one byte (0: stored as it is; older checkpoints were compressed here),
 * then: u32 JSON length, the description, u32 section count, and each section as u32 length +
 * bytes.
 */
const PREFIX = 8 + 4 + 64;

/** Packs the description and sections behind a small plain prefix, in one buffer. */
export function packCheckpoint(
  meta: CheckpointMeta,
  sections: Uint8Array[],
): Uint8Array<ArrayBuffer> {
  const json = new TextEncoder().encode(JSON.stringify(meta));
  const total = 4 + json.length + 4 + sections.reduce((n, s) => n + 4 + s.length, 0);
  const out = new Uint8Array(PREFIX + 1 + total);
  const body = out.subarray(PREFIX + 1);
  const view = new DataView(out.buffer, PREFIX + 1);
  view.setUint32(0, json.length, true);
  body.set(json, 4);
  let at = 4 + json.length;
  view.setUint32(at, sections.length, true);
  at += 4;
  for (const s of sections) {
    view.setUint32(at, s.length, true);
    body.set(s, at + 4);
    at += 4 + s.length;
  }
  out[PREFIX] = 0; // stored as it is
  return writePrefix(out, meta);
}

function writePrefix(out: Uint8Array<ArrayBuffer>, meta: CheckpointMeta): Uint8Array<ArrayBuffer> {
  out.set(new TextEncoder().encode(MAGIC));
  new DataView(out.buffer).setUint32(8, meta.version, true);
  out.set(new TextEncoder().encode(meta.baseId.padEnd(64).slice(0, 64)), 12);
  return out;
}

function fail(why: string): never {
  throw new CheckpointFormatError(`not a readable Moat checkpoint: ${why}`);
}

/** The plain prefix: the format version and the id of the base the delta is against. */
export function readPrefix(bytes: Uint8Array): { version: number; baseId: string } {
  if (bytes.length < PREFIX || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    fail("no magic");
  }
  const version = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (version !== CHECKPOINT_VERSION) {
    fail(`version ${version}, this Moat reads version ${CHECKPOINT_VERSION}`);
  }
  return { version, baseId: new TextDecoder().decode(bytes.subarray(12, PREFIX)).trim() };
}

/** Inflates (at most `maxBytes`) and splits a checkpoint; sections are views, not copies. */
export async function unpackCheckpoint(
  bytes: Uint8Array,
  maxBytes: number,
): Promise<{ meta: CheckpointMeta; sections: Uint8Array[] }> {
  const { baseId } = readPrefix(bytes);
  const stored = bytes.length > PREFIX && bytes[PREFIX] === 0;
  if (stored && bytes.length - PREFIX - 1 > maxBytes) fail(`it holds more than ${maxBytes} bytes`);
  // A stored body is read where it is; sections are views into `bytes` then.
  const raw = stored ? bytes.subarray(PREFIX + 1) : await decompress(bytes.slice(PREFIX), maxBytes);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (raw.length < 8) fail("it is cut short");
  const jsonLength = view.getUint32(0, true);
  if (4 + jsonLength + 4 > raw.length) fail("its description is cut short");
  const meta = JSON.parse(new TextDecoder().decode(raw.subarray(4, 4 + jsonLength)));
  if (meta?.baseId !== baseId) fail("its prefix and description disagree");
  let at = 4 + jsonLength;
  const count = view.getUint32(at, true);
  at += 4;
  const sections: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > raw.length) fail("a section is cut short");
    const length = view.getUint32(at, true);
    if (at + 4 + length > raw.length) fail("a section is cut short");
    sections.push(raw.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return { meta, sections };
}
