/**
 * A checkpoint's memory image stored as its difference from the boot snapshot's: only the 4 KiB
 * pages that differ are kept, so a session that changed little costs kilobytes instead of the
 * whole 30 MB image. Pure: no Pyodide, no I/O; used by the worker (diff, apply) and the host.
 */

/** The unit of comparison: a memory page; a call dirties few of them (64 KiB chunks: 15× more bytes). */
export const CHUNK_BYTES = 4 * 1024;

const DELTA_MAGIC = 0x314c444d; // "MDL1", little-endian
const HEADER_WORDS = 4;

/** A delta that does not fit the base it is applied to, or is not a delta at all. */
export class DeltaError extends Error {
  override name = "DeltaError";
}

function words(bytes: Uint8Array): Int32Array | undefined {
  if (bytes.byteOffset % 4 !== 0) return undefined;
  return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
}

/** Whether `image[from, to)` equals `base` there, where `base` counts as zero past its end. */
function same(
  image: Uint8Array,
  base: Uint8Array,
  imageWords: Int32Array | undefined,
  baseWords: Int32Array | undefined,
  from: number,
  to: number,
): boolean {
  const shared = Math.min(to, base.length);
  let at = from;
  if (imageWords && baseWords && from % 4 === 0) {
    const end = shared - (shared % 4);
    for (let w = at >> 2; w < end >> 2; w++) if (imageWords[w] !== baseWords[w]) return false;
    at = Math.max(at, end);
  }
  for (; at < shared; at++) if (image[at] !== base[at]) return false;
  at = Math.max(at, shared);
  if (imageWords && at % 4 === 0 && to % 4 === 0) {
    for (let w = at >> 2; w < to >> 2; w++) if (imageWords[w] !== 0) return false;
    return true;
  }
  for (; at < to; at++) if (image[at] !== 0) return false;
  return true;
}

/**
 * The chunks of `image` that differ from `base` (memory that grew past the base is compared
 * with zero, since fresh pages are zero). Layout, little-endian u32s: magic, chunk size, image
 * length, count; then the `count` chunk indices; then the chunks' bytes in that order (the last
 * chunk of the image may be short).
 */
export function diffImage(base: Uint8Array, image: Uint8Array): Uint8Array<ArrayBuffer> {
  const imageWords = words(image);
  const baseWords = words(base);
  const changed: number[] = [];
  let dataBytes = 0;
  for (let at = 0, i = 0; at < image.length; at += CHUNK_BYTES, i++) {
    const end = Math.min(at + CHUNK_BYTES, image.length);
    if (!same(image, base, imageWords, baseWords, at, end)) {
      changed.push(i);
      dataBytes += end - at;
    }
  }
  const head = (HEADER_WORDS + changed.length) * 4;
  const out = new Uint8Array(head + dataBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, DELTA_MAGIC, true);
  view.setUint32(4, CHUNK_BYTES, true);
  view.setUint32(8, image.length, true);
  view.setUint32(12, changed.length, true);
  let at = head;
  changed.forEach((index, k) => {
    view.setUint32(16 + 4 * k, index, true);
    const from = index * CHUNK_BYTES;
    const chunk = image.subarray(from, Math.min(from + CHUNK_BYTES, image.length));
    out.set(chunk, at);
    at += chunk.length;
  });
  return out;
}

/** What a delta says about the image it rebuilds, read without rebuilding it. */
export function deltaInfo(delta: Uint8Array): { imageBytes: number; chunks: number } {
  if (delta.length < HEADER_WORDS * 4) throw new DeltaError("a memory delta is truncated");
  const view = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  if (view.getUint32(0, true) !== DELTA_MAGIC) throw new DeltaError("not a memory delta");
  if (view.getUint32(4, true) !== CHUNK_BYTES) {
    throw new DeltaError(`a memory delta of ${view.getUint32(4, true)}-byte chunks is unsupported`);
  }
  return { imageBytes: view.getUint32(8, true), chunks: view.getUint32(12, true) };
}

/**
 * Rebuilds the image: `base` (cut or zero-extended to the image's length) with the delta's
 * chunks written over it, into `out` when given (it must be `imageBytes` long and zero past the
 * base, e.g. fresh), else into a new array.
 */
export function applyDelta(base: Uint8Array, delta: Uint8Array, out?: Uint8Array): Uint8Array {
  const { imageBytes, chunks } = deltaInfo(delta);
  const view = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  const image = out ?? new Uint8Array(imageBytes);
  if (image.length !== imageBytes) {
    throw new DeltaError(`the image is ${imageBytes} bytes, the buffer ${image.length}`);
  }
  image.set(base.subarray(0, Math.min(base.length, imageBytes)));
  let at = (HEADER_WORDS + chunks) * 4;
  for (let k = 0; k < chunks; k++) {
    const from = view.getUint32(16 + 4 * k, true) * CHUNK_BYTES;
    const length = Math.min(CHUNK_BYTES, imageBytes - from);
    if (!(from < imageBytes) || at + length > delta.length) {
      throw new DeltaError("a memory delta is truncated or does not fit its image");
    }
    image.set(delta.subarray(at, at + length), from);
    at += length;
  }
  return image;
}

/** gzip, the format's own CRC catches a corrupted checkpoint before any byte of it is used. */
export async function compress(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Inflates gzip, refusing output past `maxBytes` (a checkpoint never exceeds the memory cap). */
export async function decompress(
  bytes: Uint8Array<ArrayBuffer>,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
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
  const { imageBytes, chunks } = deltaInfo(delta);
  const view = new DataView(delta.buffer, delta.byteOffset, delta.byteLength);
  if (image.length < imageBytes) {
    throw new DeltaError(`the image is ${imageBytes} bytes, the memory ${image.length}`);
  }
  let at = (HEADER_WORDS + chunks) * 4;
  for (let k = 0; k < chunks; k++) {
    const from = view.getUint32(16 + 4 * k, true) * CHUNK_BYTES;
    const length = Math.min(CHUNK_BYTES, imageBytes - from);
    if (!(from < imageBytes) || at + length > delta.length) {
      throw new DeltaError("a memory delta is truncated or does not fit its image");
    }
    image.set(delta.subarray(at, at + length), from);
    at += length;
  }
}
