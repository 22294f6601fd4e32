/**
 * Compiled extensions (`.so` side modules) in a checkpoint. Their data lives in the wasm memory
 * the snapshot holds, but their code, their function-table slots and Emscripten's record of them
 * are JavaScript state. A restore loads each library again, in the original order, at the same
 * memory base and table base (before the memory image is copied over it), so every pointer in
 * the image still means what it meant. Runs inside the worker only.
 */
import type { DylibRecord, Lost, TableEntry } from "./format.ts";

// deno-lint-ignore no-explicit-any
type Module = any;

/** The memory base the next library load must get, set only while a restore replays a load. */
let forcedBase: number | undefined;

/** A wasm function `(i32, i32) -> i32` calling `fn`: a function table only takes wasm ones. */
function wasmFunction(fn: (a: number, b: number) => number): unknown {
  const bytes = Uint8Array.of(
    ...[0, 97, 115, 109, 1, 0, 0, 0],
    ...[1, 7, 1, 0x60, 2, 0x7f, 0x7f, 1, 0x7f], // type (i32, i32) -> i32
    ...[2, 7, 1, 1, 101, 1, 102, 0, 0], // import e.f
    ...[7, 5, 1, 1, 102, 0, 0], // export f
  );
  return new WebAssembly.Instance(new WebAssembly.Module(bytes), { e: { f: fn } }).exports.f;
}

// deno-lint-ignore no-explicit-any
function hookMain(result: any): any {
  const instance = result instanceof WebAssembly.Instance ? result : result?.instance;
  const exports = instance?.exports;
  if (!exports || !("Py_Initialize" in exports) || typeof exports.calloc !== "function") {
    return result;
  }
  const calloc = exports.calloc as (n: number, size: number) => number;
  const hooked = wasmFunction((n, size) => {
    if (forcedBase === undefined) return calloc(n, size);
    const base = forcedBase;
    forcedBase = undefined;
    return base;
  });
  const fake = { exports: Object.freeze({ ...exports, calloc: hooked }) };
  return result instanceof WebAssembly.Instance ? fake : { module: result.module, instance: fake };
}

/**
 * Runs `load` (Pyodide's boot) with the main module's `calloc`, through which Emscripten
 * allocates a library's memory, routed through a hook a restore can steer. Every worker boots
 * this way, the one making the boot snapshot too, so all share one function-table layout.
 */
export async function withAllocatorHook<T>(load: () => Promise<T>): Promise<T> {
  const instantiate = WebAssembly.instantiate;
  // deno-lint-ignore no-explicit-any
  (WebAssembly as any).instantiate = async (...args: any[]) =>
    // deno-lint-ignore no-explicit-any
    hookMain(await (instantiate as any)(...args));
  try {
    return await load();
  } finally {
    WebAssembly.instantiate = instantiate;
  }
}

/** The libraries loaded since boot, in load order, with where each one sits. */
export function captureDylibs(module: Module, lost: Lost[]): DylibRecord[] {
  const { loadedLibsByName, loadedLibsByHandle } = module.LDSO;
  const u32 = module.HEAPU32 as Uint32Array;
  const records: DylibRecord[] = [];
  const seen = new Set<unknown>();
  for (const [path, dso] of Object.entries(loadedLibsByName) as [string, { global: boolean }][]) {
    if (path === "__main__" || seen.has(dso)) continue;
    seen.add(dso);
    const handles = Object.entries(loadedLibsByHandle)
      .filter(([h, d]) => d === dso && Number(h) !== 0)
      .map(([h]) => Number(h));
    // loadWebAssemblyModule writes where it put a library into the handle that loaded it.
    const first = handles.find((h) => module.HEAP8[h + 8] === 1);
    if (first === undefined) {
      lost.push({
        what: `compiled library ${path}`,
        why: "it was loaded without a dlopen handle, so where it sits in memory is unknown",
      });
      continue;
    }
    records.push({
      path,
      global: Boolean(dso.global),
      memoryBase: u32[(first + 12) >> 2],
      tableBase: u32[(first + 20) >> 2],
      tableSize: u32[(first + 24) >> 2],
      handles,
    });
  }
  return records;
}

/** Table slots filled after boot outside any library's own range (dlsym's, mostly). */
export function captureTable(
  module: Module,
  bootLength: number,
  dylibs: DylibRecord[],
  lost: Lost[],
): { length: number; bootLength: number; entries: TableEntry[] } {
  const table = module.wasmTable as WebAssembly.Table;
  const inLibrary = (i: number) =>
    dylibs.some((d) => i >= d.tableBase && i < d.tableBase + d.tableSize);
  const exportsOf = new Map<unknown, TableEntry>();
  for (const d of dylibs) {
    const dso = module.LDSO.loadedLibsByName[d.path];
    for (const [symbol, fn] of Object.entries(dso?.exports ?? {})) {
      if (typeof fn === "function") exportsOf.set(fn, { index: -1, path: d.path, symbol });
    }
  }
  const entries: TableEntry[] = [];
  for (let i = bootLength; i < table.length; i++) {
    if (inLibrary(i)) continue;
    const fn = table.get(i);
    if (!fn) continue;
    const known = exportsOf.get(fn);
    if (known) entries.push({ ...known, index: i });
    else {
      lost.push({
        what: `function table slot ${i}`,
        why: "it holds a function added at run time that is not a library export",
      });
    }
  }
  return { length: table.length, bootLength, entries };
}

/**
 * Loads the libraries again where they were (their files must already be back in the file
 * system), restores the dlopen handles and the table slots filled after boot, and leaves the
 * slots Pyodide fills later in boot free in the order it will take them.
 */
export function replayDylibs(
  module: Module,
  dylibs: DylibRecord[],
  table: { length: number; bootLength: number; entries: TableEntry[] },
  lost: Lost[],
): void {
  const wasmTable = module.wasmTable as WebAssembly.Table;
  const reserved: number[] = [];
  const grow = (to: number) => {
    for (let i = wasmTable.length; i < to; i++) reserved.push(i);
    if (wasmTable.length < to) wasmTable.grow(to - wasmTable.length);
  };
  for (const lib of dylibs) {
    try {
      if (wasmTable.length > lib.tableBase) {
        throw new Error(`its table base ${lib.tableBase} is already taken`);
      }
      grow(lib.tableBase);
      forcedBase = lib.memoryBase;
      module.loadDynamicLibrary(
        lib.path,
        { loadAsync: false, global: lib.global, nodelete: true, allowUndefined: true },
        lib.global ? undefined : {},
      );
      const dso = module.LDSO.loadedLibsByName[lib.path];
      for (const h of lib.handles) module.LDSO.loadedLibsByHandle[h] = dso;
    } catch (err) {
      lost.push({
        what: `compiled library ${lib.path}`,
        why: `it could not be loaded again at its place: ${(err as Error).message}`,
      });
    } finally {
      forcedBase = undefined;
    }
  }
  grow(table.length);
  for (const e of table.entries) {
    const fn = module.LDSO.loadedLibsByName[e.path]?.exports?.[e.symbol];
    if (typeof fn === "function") module.setWasmTableEntry(e.index, fn);
    else lost.push({ what: `function table slot ${e.index}`, why: `${e.symbol} is gone` });
  }
  const taken = new Set(table.entries.map((e) => e.index));
  const free = reserved.filter((i) => !taken.has(i) && !wasmTable.get(i));
  // Emscripten pops from the end: the lowest index must come out first.
  module.freeTableIndexes.push(...free.toReversed());
}
