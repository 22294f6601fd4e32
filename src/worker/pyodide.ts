/**
 * Loading Pyodide lean: the host's compiled wasm module is reused, a snapshot is restored chunk
 * by chunk, and boot garbage is collected before the interpreter idles.
 */
import createPyodideModule from "pyodide/pyodide.asm.mjs";
import { gcFromNewContext } from "./gc.ts";

const CHUNK = 64 * 1024;

/**
 * V8's `gc` when the server runs with --expose-gc (see MEMORY_V8_FLAGS), taken off the global
 * object (writable, though not deletable) as this module loads, so no other code here sees it.
 */
export const collectGarbage = (globalThis as { gc?: () => void }).gc ?? gcFromNewContext();
(globalThis as { gc?: () => void }).gc = undefined;

function isZero(words: Int32Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * Pyodide's module factory, changed in two ways that only save memory: a snapshot is restored
 * chunk by chunk, skipping chunks that are zero in the snapshot and in the fresh memory alike
 * (about half of them, which then never become resident), and the wasm binary Pyodide read from
 * disk is let go once the module is instantiated.
 */
// deno-lint-ignore no-explicit-any
export async function leanPyodideModule(settings: any): Promise<any> {
  // Untyped: the factory's declared type (when a checker finds one) does not list API or HEAPU8.
  // deno-lint-ignore no-explicit-any
  const module: any = await createPyodideModule(settings);
  settings.instantiateWasm = undefined; // its closure holds the 10 MB binary
  const api = module.API;
  const restore = api?.restoreSnapshot;
  if (typeof restore !== "function") return module;
  api.restoreSnapshot = (snapshot: Uint8Array) => {
    const start = new Uint32Array(snapshot.buffer, snapshot.byteOffset, 2)[1];
    const heap: Uint8Array = module.HEAPU8;
    const image = snapshot.subarray(start);
    if (start % 4 || snapshot.byteOffset % 4 || image.length > heap.length) {
      return restore(snapshot);
    }
    // Pyodide checks the header and decodes its metadata; the memory image is copied below.
    const meta = restore(snapshot.subarray(0, start));
    const src = new Int32Array(image.buffer, image.byteOffset, image.length >> 2);
    const dst = new Int32Array(heap.buffer, 0, heap.length >> 2);
    for (let at = 0; at < image.length; at += CHUNK) {
      const end = Math.min(at + CHUNK, image.length);
      if (!isZero(src, at >> 2, end >> 2) || end % 4) heap.set(image.subarray(at, end), at);
      else if (!isZero(dst, at >> 2, end >> 2)) heap.fill(0, at, end);
    }
    return meta;
  };
  return module;
}

/**
 * Runs `load` with WebAssembly.instantiate answering Pyodide's request to instantiate its wasm
 * binary with the module the host compiled once; the rest of the worker never sees the change.
 */
export async function withCompiled<T>(
  module: WebAssembly.Module | undefined,
  load: () => Promise<T>,
): Promise<T> {
  if (!module) return await load();
  const instantiate = WebAssembly.instantiate;
  // deno-lint-ignore no-explicit-any
  (WebAssembly as any).instantiate = async (source: any, imports?: WebAssembly.Imports) => {
    if (source instanceof WebAssembly.Module || !(source?.byteLength > 1_000_000)) {
      return await instantiate(source, imports);
    }
    return { module, instance: await instantiate(module, imports) };
  };
  try {
    return await load();
  } finally {
    WebAssembly.instantiate = instantiate;
  }
}
