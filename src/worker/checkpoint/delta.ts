/**
 * A checkpoint's memory image stored as deltas: only the chunks (`CHUNK_BYTES`) that differ from
 * the image before are kept, so a session that changed little costs kilobytes instead of its whole heap.
 * The first delta of a session is against the delta base (an idle session's image); each later
 * one against the image the checkpoint before it stored (`PageTracker`), and the store merges
 * deltas (`mergeDeltas`). Pure: no Pyodide, no I/O, nothing but `node:` imports, since the
 * interpreter's worker and the sealing worker (`src/codec/`) both read this file.
 */
import { Buffer } from "node:buffer";
import { zstdDecompressSync } from "node:zlib";

/**
 * The unit of comparison. CPython changes a few bytes here and there on every call (reference
 * counts, the specializing interpreter's counters): a trivial call changes about 200 places
 * scattered over the heap. `deno task bench --durable`, "small change" rows: 240 KB written per
 * checkpoint with 4 KiB pages, 25 KB with 256-byte chunks. The fingerprints cost 8 bytes per
 * chunk: 3% of the heap, in the worker.
 */
export const CHUNK_BYTES = 256;

const DELTA_MAGIC = 0x314c444d; // "MDL1", little-endian
const HEADER_WORDS = 4;

/** A delta that does not fit the base it is applied to, or is not a delta at all. */
export class DeltaError extends Error {
  override name = "DeltaError";
}

/** Zero bytes to compare memory that grew past the base with (fresh pages are zero). */
const ZERO = Buffer.alloc(CHUNK_BYTES);

/** Whether `image[from, to)` equals `base` there, where `base` counts as zero past its end. */
function same(image: Buffer, base: Buffer, from: number, to: number): boolean {
  const shared = Math.min(to, base.length);
  // Buffer.equals is memcmp: several times faster than comparing words in a JavaScript loop.
  if (from < shared && !image.subarray(from, shared).equals(base.subarray(from, shared))) {
    return false;
  }
  const tail = Math.max(from, shared);
  return tail >= to || image.subarray(tail, to).equals(ZERO.subarray(0, to - tail));
}

/**
 * The chunks of `image` that differ from `base` (memory that grew past the base is compared
 * with zero, since fresh pages are zero). Layout, little-endian u32s: magic, chunk size, image
 * length, count; then the `count` chunk indices; then the chunks' bytes in that order (the last
 * chunk of the image may be short).
 */
export function diffImage(base: Uint8Array, image: Uint8Array): Uint8Array<ArrayBuffer> {
  const imageBuf = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  const baseBuf = Buffer.from(base.buffer, base.byteOffset, base.byteLength);
  const changed: number[] = [];
  for (let at = 0, i = 0; at < image.length; at += CHUNK_BYTES, i++) {
    if (!same(imageBuf, baseBuf, at, Math.min(at + CHUNK_BYTES, image.length))) changed.push(i);
  }
  return packChunks(image, changed);
}

/** A delta of `image`'s chunks at `changed` (ascending indices), copied out. */
function packChunks(image: Uint8Array, changed: ArrayLike<number>): Uint8Array<ArrayBuffer> {
  return writeDelta(image.length, changed, (c) => image.subarray(c * CHUNK_BYTES));
}

/**
 * The delta of an image of `imageBytes` whose chunks at `changed` (ascending) hold what `source`
 * gives for each, cut to the chunk's size; a shorter source leaves the rest zero.
 */
function writeDelta(
  imageBytes: number,
  changed: ArrayLike<number>,
  source: (chunk: number) => Uint8Array,
): Uint8Array<ArrayBuffer> {
  const size = (c: number) => Math.min(CHUNK_BYTES, imageBytes - c * CHUNK_BYTES);
  let dataBytes = 0;
  for (let k = 0; k < changed.length; k++) dataBytes += size(changed[k]);
  const head = (HEADER_WORDS + changed.length) * 4;
  const out = new Uint8Array(head + dataBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, DELTA_MAGIC, true);
  view.setUint32(4, CHUNK_BYTES, true);
  view.setUint32(8, imageBytes, true);
  view.setUint32(12, changed.length, true);
  let at = head;
  for (let k = 0; k < changed.length; k++) {
    const c = changed[k];
    view.setUint32(16 + 4 * k, c, true);
    const bytes = source(c);
    out.set(bytes.subarray(0, Math.min(bytes.length, size(c))), at);
    at += size(c);
  }
  return out;
}

const WORDS_PER_CHUNK = CHUNK_BYTES / 4;

/**
 * Two 32-bit lanes per chunk, every word feeding both (multiply, add, rotate: no bit of a word
 * can change unseen), seeded per tracker so a chunk's content cannot be chosen to collide. It
 * spares keeping a copy of the image; where the base is still equal, comparing with it is
 * faster (`scripts/bench_fingerprint.ts`).
 */
function hashChunks(
  bytes: Uint8Array,
  first: number,
  last: number,
  seed: number,
  out: Int32Array,
): void {
  const whole = Math.floor(bytes.length / CHUNK_BYTES);
  const aligned = bytes.byteOffset % 4 === 0;
  const words = new Int32Array(
    bytes.buffer,
    bytes.byteOffset - (aligned ? 0 : bytes.byteOffset % 4),
    aligned ? whole * WORDS_PER_CHUNK : 0,
  );
  for (let c = first; c < last; c++) {
    let a = seed ^ 0x9e3779b1;
    let b = Math.imul(seed, 0x85ebca6b);
    if (c < whole && aligned) {
      for (let i = c * WORDS_PER_CHUNK, end = i + WORDS_PER_CHUNK; i < end; i += 2) {
        const x = words[i];
        const y = words[i + 1];
        a = Math.imul(a ^ x, 0xcc9e2d51) + y;
        a = (a << 15) | (a >>> 17);
        b = Math.imul(b ^ y, 0x1b873593) + x;
        b = (b << 13) | (b >>> 19);
      }
    } else {
      // A short last chunk, or memory not 4-aligned: byte by byte.
      for (let i = c * CHUNK_BYTES, end = Math.min(i + CHUNK_BYTES, bytes.length); i < end; i++) {
        a = Math.imul(a ^ bytes[i], 0xcc9e2d51);
        a = (a << 15) | (a >>> 17);
        b = Math.imul(b + bytes[i], 0x1b873593);
        b = (b << 13) | (b >>> 19);
      }
    }
    out[2 * c] = a;
    out[2 * c + 1] = b;
  }
}

/** Memory compared with the base (memcmp) a block at a time before any of it is hashed. */
const BLOCK_BYTES = 16 * 1024;
const CHUNKS_PER_BLOCK = BLOCK_BYTES / CHUNK_BYTES;
const ZERO_BLOCK = Buffer.alloc(BLOCK_BYTES);

/**
 * What a session's memory was at its last checkpoint, as a fingerprint per chunk (8 bytes per
 * 256), so the next checkpoint finds what changed since without a copy of the image. Starts at
 * the base: the first delta of an interpreter is against the base.
 */
export class PageTracker {
  readonly #seed = crypto.getRandomValues(new Int32Array(1))[0];
  readonly #base: Uint8Array;
  /** Fingerprints of the base's chunks, then of a zero chunk (memory past it), made once. */
  #baseHashes?: Int32Array;
  /** Fingerprints of the image the last delta made, or undefined while it is the base. */
  #last?: Int32Array;
  /** After a restore: the chunks `#last` knows; the others are the base's. */
  #known?: Uint8Array;
  /** Checkpoints taken so far (a restored image is 0); names the image `#last` describes. */
  generation = 0;

  constructor(base: Uint8Array) {
    this.#base = base;
  }

  /** Whether the next delta would be against the base (nothing taken or restored yet). */
  get atBase(): boolean {
    return !this.#last;
  }

  /** Fingerprints the base now (about 10 ms for 30 MB), e.g. while the worker waits in the pool. */
  prepare(): void {
    this.#baseHash(0, 0);
  }

  #baseHash(c: number, lane: number): number {
    if (!this.#baseHashes) {
      const chunks = Math.ceil(this.#base.length / CHUNK_BYTES);
      const hashes = new Int32Array(2 * (chunks + 1));
      hashChunks(this.#base, 0, chunks, this.#seed, hashes);
      const zero = new Int32Array(2);
      hashChunks(new Uint8Array(CHUNK_BYTES), 0, 1, this.#seed, zero);
      hashes.set(zero, 2 * chunks);
      this.#baseHashes = hashes;
    }
    const hashes = this.#baseHashes;
    return 2 * c + 2 < hashes.length ? hashes[2 * c + lane] : hashes[hashes.length - 2 + lane];
  }

  /** The fingerprint chunk `c` had in the image before (`last`, else the base). */
  #before(last: Int32Array | undefined, c: number, lane: number): number {
    if (last && 2 * c < last.length && (!this.#known || this.#known[c])) return last[2 * c + lane];
    return this.#baseHash(c, lane);
  }

  /**
   * The chunks of `image` that changed since the last delta (`full`: since the base), copied
   * out; the tracker then stands at `image`.
   */
  diff(image: Uint8Array, full: boolean): Uint8Array<ArrayBuffer> {
    const chunks = Math.ceil(image.length / CHUNK_BYTES);
    const now = this.#fingerprint(image, chunks);
    const last = full ? undefined : this.#last;
    // The image before, as one array of fingerprints (usually `#last` as it is).
    let before = last;
    if (!before || this.#known || before.length < now.length) {
      before = new Int32Array(now.length);
      for (let c = 0; c < chunks; c++) {
        before[2 * c] = this.#before(last, c, 0);
        before[2 * c + 1] = this.#before(last, c, 1);
      }
    }
    const changed: number[] = [];
    for (let i = 0; i < now.length; i += 2) {
      if (now[i] !== before[i] || now[i + 1] !== before[i + 1]) changed.push(i >> 1);
    }
    this.#last = now;
    this.#known = undefined;
    this.generation++;
    return packChunks(image, changed);
  }

  /**
   * Fingerprints of `image`'s chunks. Most of a session's memory is still the base's: a block
   * equal to it (memcmp, native and several times faster than hashing) takes the base's
   * fingerprints; only the other blocks are hashed.
   */
  #fingerprint(image: Uint8Array, chunks: number): Int32Array {
    this.prepare();
    const base = this.#baseHashes!;
    const baseChunks = (base.length >> 1) - 1;
    const baseBytes = this.#base;
    const now = new Int32Array(2 * chunks);
    for (let first = 0; first < chunks; first += CHUNKS_PER_BLOCK) {
      const last = Math.min(chunks, first + CHUNKS_PER_BLOCK);
      const from = first * CHUNK_BYTES;
      const to = Math.min(image.length, last * CHUNK_BYTES);
      const whole = to - from === BLOCK_BYTES;
      if (whole && last <= baseChunks && to <= baseBytes.length) {
        if (Buffer.compare(image.subarray(from, to), baseBytes.subarray(from, to)) === 0) {
          now.set(base.subarray(2 * first, 2 * last), 2 * first);
          continue;
        }
      } else if (
        whole && from >= baseBytes.length &&
        Buffer.compare(image.subarray(from, to), ZERO_BLOCK) === 0
      ) {
        for (let c = first; c < last; c++) {
          now[2 * c] = base[2 * baseChunks];
          now[2 * c + 1] = base[2 * baseChunks + 1];
        }
        continue;
      }
      hashChunks(image, first, last, this.#seed, now);
    }
    return now;
  }

  /**
   * After a restore: the image is the base with `deltas` written over it, so only the chunks
   * they wrote are fingerprinted now; the rest are the base's.
   */
  restored(image: Uint8Array, deltas: Uint8Array[]): void {
    // An older checkpoint's chunks are not this tracker's: its next delta is against the base.
    if (deltas.some((d) => deltaInfo(d).chunkBytes !== CHUNK_BYTES)) return;
    const chunks = Math.ceil(image.length / CHUNK_BYTES);
    const now = new Int32Array(2 * chunks);
    const known = new Uint8Array(chunks);
    for (const delta of deltas) {
      for (const c of deltaChunks(delta)) {
        if (c >= chunks || known[c]) continue;
        known[c] = 1;
        hashChunks(image, c, c + 1, this.#seed, now);
      }
    }
    this.#last = now;
    this.#known = known;
  }
}

/** The chunk indices a delta writes, in its order. */
export function deltaChunks(delta: Uint8Array): Uint32Array {
  const { chunks } = deltaInfo(delta);
  if (delta.length < (HEADER_WORDS + chunks) * 4) {
    throw new DeltaError("a memory delta is truncated");
  }
  const view = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  const out = new Uint32Array(chunks);
  for (let k = 0; k < chunks; k++) out[k] = view.getUint32(16 + 4 * k, true);
  return out;
}

/**
 * One delta that does what `deltas` do applied in order: each chunk as the last of them wrote
 * it, for the image the last one describes. The store compacts a chain of deltas with it.
 */
export function mergeDeltas(deltas: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (deltas.length === 0) throw new DeltaError("no deltas to merge");
  const { imageBytes } = deltaInfo(deltas[deltas.length - 1]);
  /** Chunk index → the delta, offset and length that wrote it last. */
  const latest = new Map<number, { delta: Uint8Array; at: number; length: number }>();
  for (const delta of deltas) {
    const indices = deltaChunks(delta);
    const { imageBytes: own, chunkBytes } = deltaInfo(delta);
    if (chunkBytes !== CHUNK_BYTES) {
      throw new DeltaError("deltas of other chunk sizes do not merge");
    }
    let at = (HEADER_WORDS + indices.length) * 4;
    for (const c of indices) {
      const length = Math.min(CHUNK_BYTES, own - c * CHUNK_BYTES);
      if (!(c * CHUNK_BYTES < own) || at + length > delta.length) {
        throw new DeltaError("a memory delta is truncated or does not fit its image");
      }
      if (c * CHUNK_BYTES < imageBytes) latest.set(c, { delta, at, length });
      at += length;
    }
  }
  const changed = Uint32Array.from(latest.keys()).sort();
  // A chunk written short (the end of a smaller image) is zero past what it wrote.
  return writeDelta(imageBytes, changed, (c) => {
    const { delta, at, length } = latest.get(c)!;
    return delta.subarray(at, at + length);
  });
}

/** What a delta says about the image it rebuilds, read without rebuilding it. */
export function deltaInfo(
  delta: Uint8Array,
): { imageBytes: number; chunks: number; chunkBytes: number } {
  if (delta.length < HEADER_WORDS * 4) throw new DeltaError("a memory delta is truncated");
  const view = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  if (view.getUint32(0, true) !== DELTA_MAGIC) throw new DeltaError("not a memory delta");
  // Older checkpoints compared 4 KiB pages: any power of two from 256 B to 64 KiB reads.
  const chunkBytes = view.getUint32(4, true);
  if (chunkBytes < 256 || chunkBytes > 65536 || (chunkBytes & (chunkBytes - 1)) !== 0) {
    throw new DeltaError(`a memory delta of ${chunkBytes}-byte chunks is unsupported`);
  }
  return { imageBytes: view.getUint32(8, true), chunks: view.getUint32(12, true), chunkBytes };
}

/**
 * Rebuilds the image: `base` (cut or zero-extended to the image's length) with the delta's
 * chunks written over it, into `out` when given (it must be `imageBytes` long and zero past the
 * base, e.g. fresh), else into a new array.
 */
export function applyDelta(base: Uint8Array, delta: Uint8Array, out?: Uint8Array): Uint8Array {
  const { imageBytes } = deltaInfo(delta);
  const image = out ?? new Uint8Array(imageBytes);
  if (image.length !== imageBytes) {
    throw new DeltaError(`the image is ${imageBytes} bytes, the buffer ${image.length}`);
  }
  image.set(base.subarray(0, Math.min(base.length, imageBytes)));
  writeDeltaChunks(delta, image);
  return image;
}

/** zstd's frame magic; older checkpoints are gzip (0x1f 0x8b). */
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * Inflates the body of a checkpoint written before the sealing worker compressed them (zstd, or
 * gzip before that), refusing output past `maxBytes`.
 */
export async function decompress(
  bytes: Uint8Array<ArrayBuffer>,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  if (ZSTD_MAGIC.every((b, i) => bytes[i] === b)) {
    try {
      const out = zstdDecompressSync(bytes, { maxOutputLength: maxBytes });
      return new Uint8Array(out.buffer as ArrayBuffer, out.byteOffset, out.byteLength);
    } catch (err) {
      if (err instanceof RangeError) {
        throw new DeltaError(`a checkpoint inflates past ${maxBytes} bytes`);
      }
      throw new DeltaError(`a checkpoint is not valid zstd: ${(err as Error).message}`);
    }
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    for await (const chunk of stream) {
      total += chunk.length;
      if (total > maxBytes) throw new DeltaError(`a checkpoint inflates past ${maxBytes} bytes`);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof DeltaError) throw err;
    throw new DeltaError(`a checkpoint is not valid gzip: ${(err as Error).message}`);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Writes the delta's chunks into `image` (already holding the base, e.g. the restored heap), in
 * place: a restore then copies the base once and the changed chunks once, with no full image.
 */
export function writeDeltaChunks(delta: Uint8Array, image: Uint8Array): void {
  const { imageBytes, chunks, chunkBytes } = deltaInfo(delta);
  const view = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  if (image.length < imageBytes) {
    throw new DeltaError(`the image is ${imageBytes} bytes, the memory ${image.length}`);
  }
  let at = (HEADER_WORDS + chunks) * 4;
  for (let k = 0; k < chunks; k++) {
    const from = view.getUint32(16 + 4 * k, true) * chunkBytes;
    const length = Math.min(chunkBytes, imageBytes - from);
    if (!(from < imageBytes) || at + length > delta.length) {
      throw new DeltaError("a memory delta is truncated or does not fit its image");
    }
    image.set(delta.subarray(at, at + length), from);
    at += length;
  }
}
