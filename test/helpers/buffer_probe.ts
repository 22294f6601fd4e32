/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * A worker that applies the real buffer caps (src/worker/limits.ts) and then tries every way it
 * knows to allocate a buffer past them, reporting which ones got through.
 */
import { capBuffers } from "../../src/worker/limits.ts";

const MAX = 8 * 1024 * 1024;
const BIG = 16 * 1024 * 1024;

self.onmessage = () => {
  capBuffers(MAX, 1024 * 1024 * 1024);
  const base64 = "AAAA".repeat(Math.ceil(BIG / 3));
  const hex = "ab".repeat(BIG);
  const text = "x".repeat(BIG);
  const attempts: [string, () => unknown][] = [
    ["new Uint8Array(n)", () => new Uint8Array(BIG)],
    ["new Float64Array(n)", () => new Float64Array(BIG / 8)],
    ["new ArrayBuffer(n)", () => new ArrayBuffer(BIG)],
    ["new ArrayBuffer(0, { maxByteLength })", () => new ArrayBuffer(0, { maxByteLength: BIG })],
    ["ArrayBuffer.prototype.resize", () => new ArrayBuffer(1, { maxByteLength: 2 }).resize(BIG)],
    ["ArrayBuffer.prototype.transfer", () => new ArrayBuffer(1).transfer(BIG)],
    ["new SharedArrayBuffer(n)", () => new SharedArrayBuffer(BIG)],
    [
      "a buffer's own .constructor",
      () => new (new Uint8Array(1).constructor as Uint8ArrayConstructor)(BIG),
    ],
    ["Uint8Array.from({ length })", () => Uint8Array.from({ length: BIG })],
    ["Uint8Array.fromBase64", () => Uint8Array.fromBase64(base64)],
    ["Uint8Array.fromHex", () => Uint8Array.fromHex(hex)],
    ["TextEncoder.encode", () => new TextEncoder().encode(text)],
    ["new WebAssembly.Memory({ initial })", () => new WebAssembly.Memory({ initial: BIG / 65536 })],
  ];
  const allowed: [string, () => unknown][] = [
    ["a small Uint8Array", () => new Uint8Array(1024)],
    ["a small fromBase64", () => Uint8Array.fromBase64("aGk=")],
    ["a small TextEncoder.encode", () => new TextEncoder().encode("hi")],
  ];
  const through = attempts.filter(([, attempt]) => {
    try {
      attempt();
      return true;
    } catch {
      return false;
    }
  }).map(([what]) => what);
  const refused = allowed.filter(([, attempt]) => {
    try {
      attempt();
      return false;
    } catch {
      return true;
    }
  }).map(([what]) => what);
  self.postMessage({ through, refused });
};
