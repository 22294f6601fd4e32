/**
 * zstd (`node:zlib`) for sealed records: level 1 with its checksum. Measured against the gzip of
 * `CompressionStream` on checkpoint-like data: about ten times faster, and smaller. A record that
 * does not compress (random data) is left as it is: zstd would gain nothing there and cost time.
 */
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";

/** How much of a big record is compressed to judge whether the rest is worth it. */
const SAMPLE_BYTES = 1 << 20;

function zstd(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = zstdCompressSync(bytes, {
    params: { [constants.ZSTD_c_compressionLevel]: 1, [constants.ZSTD_c_checksumFlag]: 1 },
  });
  return new Uint8Array(out.buffer as ArrayBuffer, out.byteOffset, out.byteLength);
}

/** zstd of `bytes`, or undefined when a sample from its middle does not shrink. */
export function compress(bytes: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
  if (bytes.length > 2 * SAMPLE_BYTES) {
    const middle = bytes.length >> 1;
    const sample = zstd(bytes.subarray(middle, middle + SAMPLE_BYTES));
    if (sample.length > SAMPLE_BYTES * 0.9) return undefined;
  }
  return zstd(bytes);
}

/** Inflates zstd; throws on a damaged frame (its checksum) or past `maxBytes`. */
export function decompress(bytes: Uint8Array, maxBytes?: number): Uint8Array<ArrayBuffer> {
  const out = zstdDecompressSync(bytes, maxBytes ? { maxOutputLength: maxBytes } : {});
  return new Uint8Array(out.buffer as ArrayBuffer, out.byteOffset, out.byteLength);
}
