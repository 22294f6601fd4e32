/**
 * Memory bounds inside the worker. The wasm memory cap gives Python `MemoryError`; the buffer
 * caps bound JavaScript allocations that the wasm cap does not cover. See SECURITY.md.
 */

/**
 * Refuses growth of any WebAssembly memory past the cap, so Python gets MemoryError; reports
 * each growth in `stats[0]` (64 KiB pages) so the host sees memory in use even mid-call.
 */
export function capMemory(maxBytes: number, stats: Int32Array): void {
  const grow = WebAssembly.Memory.prototype.grow;
  Object.defineProperty(WebAssembly.Memory.prototype, "grow", {
    value: function (this: WebAssembly.Memory, pages: number) {
      if (this.buffer.byteLength + pages * 65536 > maxBytes) {
        throw new RangeError(`memory limit of ${maxBytes} bytes reached`);
      }
      const before = grow.call(this, pages);
      Atomics.store(stats, 0, Math.max(Atomics.load(stats, 0), before + pages));
      return before;
    },
    writable: false,
    configurable: false,
  });
}

/** Any constructor, as far as the caps below care. */
type Ctor = new (...args: never[]) => object;

const TYPED_ARRAYS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];

/**
 * Bounds ArrayBuffer allocations in this worker, which the wasm memory cap does not cover:
 * one allocation may not exceed `maxBytes`, nor take the worker's external memory past
 * `totalBytes`. Constructors reached through `.constructor` of any buffer are the capped ones,
 * and so are the factories that allocate without a constructor (`Uint8Array.fromBase64`,
 * `fromHex`, `from`, `of`, `TextEncoder.encode`).
 */
export function capBuffers(maxBytes: number, totalBytes: number): void {
  // Performance: Deno.memoryUsage() costs ~10 µs, and every subarray() and slice() of a typed
  // array comes through here (Pyodide makes several per call to convert strings). A view over
  // an existing buffer allocates nothing; small allocations are added up and the external
  // total is read once per MiB of them, so the total may be passed by at most 1 MiB.
  let unchecked = 0;
  const refuse = (bytes: number) => {
    throw new RangeError(`buffer of ${bytes} bytes refused: Moat's memory limit`);
  };
  const check = (bytes: number) => {
    if (!(bytes <= maxBytes)) refuse(bytes);
    if (bytes <= 0) return;
    unchecked += bytes;
    if (unchecked < 1024 * 1024) return;
    unchecked = 0;
    if (Deno.memoryUsage().external + bytes > totalBytes) refuse(bytes);
  };
  const isBuffer = (x: unknown) => x instanceof ArrayBuffer || x instanceof SharedArrayBuffer;
  const lengthOf = (x: unknown) => {
    const like = x as { length?: unknown; byteLength?: unknown } | null | undefined;
    return Number(like?.length ?? like?.byteLength ?? 0);
  };
  const requested = (args: unknown[], unit: number) => {
    const [first, options] = args as [unknown, { maxByteLength?: number } | undefined];
    if (typeof first === "number") return Math.max(first, options?.maxByteLength ?? 0) * unit;
    if (first === undefined || first === null || isBuffer(first)) return 0;
    return lengthOf(first) * unit;
  };
  // `new.target` stays the original so instances keep their ordinary prototype.
  const capped = (ctor: Ctor, bytesOf: (args: unknown[]) => number): Ctor => {
    const proxy: Ctor = new Proxy(ctor, {
      construct(target: Ctor, args: unknown[], newTarget: Ctor): object {
        check(bytesOf(args));
        return Reflect.construct(target, args, newTarget === proxy ? target : newTarget);
      },
    });
    return proxy;
  };
  const guard = (owner: object, name: string, bytesOf: (args: unknown[]) => number) => {
    const original = Reflect.get(owner, name) as ((...a: unknown[]) => unknown) | undefined;
    if (typeof original !== "function") return;
    Object.defineProperty(owner, name, {
      value: function (this: unknown, ...args: unknown[]) {
        check(bytesOf(args));
        return original.apply(this, args);
      },
      configurable: false,
    });
  };
  const wrap = (ctor: Ctor, unit: number) => {
    const proxy = capped(ctor, (args) => requested(args, unit));
    Object.defineProperty(ctor.prototype, "constructor", { value: proxy, configurable: false });
    Object.defineProperty(globalThis, ctor.name, { value: proxy, configurable: false });
    // Static factories allocate without the constructor the proxy guards.
    guard(ctor, "from", (args) => lengthOf(args[0]) * unit);
    guard(ctor, "of", (args) => args.length * unit);
  };
  for (const ctor of TYPED_ARRAYS) wrap(ctor, ctor.BYTES_PER_ELEMENT);
  wrap(ArrayBuffer, 1);
  wrap(SharedArrayBuffer, 1);
  guard(Uint8Array, "fromBase64", (args) => Math.ceil(lengthOf(args[0]) * 3 / 4));
  guard(Uint8Array, "fromHex", (args) => Math.ceil(lengthOf(args[0]) / 2));
  // Up to three bytes per UTF-16 unit; Pyodide encodes every string it passes this way.
  guard(TextEncoder.prototype, "encode", (args) => lengthOf(args[0]) * 3);
  const sized = (args: unknown[]) => typeof args[0] === "number" ? args[0] : 0;
  for (const name of ["resize", "transfer", "transferToFixedLength"]) {
    guard(ArrayBuffer.prototype, name, sized);
  }
  guard(SharedArrayBuffer.prototype, "grow", sized);
  const Memory = WebAssembly.Memory;
  const memory = capped(Memory, (args) => {
    return Number((args[0] as { initial?: number } | undefined)?.initial ?? 0) * 65536;
  });
  Object.defineProperty(Memory.prototype, "constructor", { value: memory, configurable: false });
  Object.defineProperty(WebAssembly, "Memory", { value: memory, configurable: false });
}
