/**
 * Checkpoints of a live interpreter, worker side: a Pyodide memory snapshot taken between calls
 * (after user code, packages and the lockdown), stored as its delta against the boot snapshot,
 * and a boot that restores one. See docs/durable-sessions.md for the recipe: what is released
 * before the snapshot and re-attached after it. Runs inside the worker only.
 */
import type { PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import {
  CHECKPOINT_VERSION,
  type CheckpointMeta,
  type Lost,
  packCheckpoint,
  unpackCheckpoint,
} from "./format.ts";
import { applyFiles, applyStreams, captureFiles, captureStreams } from "./fs.ts";
import { type FreshTree, freshTree } from "./fs.ts";
import { captureDylibs, captureTable, replayDylibs } from "./dylibs.ts";
import { deltaInfo, PageTracker, writeDeltaChunks } from "./delta.ts";
import { looseEnds, releaseForSnapshot, STASH } from "./python.ts";
import {
  describe,
  internalNames,
  isResolver,
  pinFixedSlots,
  Primitive,
  settledStandIn,
  unboxPrimitive,
  withPrimitivesBoxed,
} from "./hiwire.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

/** The runner's and the lockdown's handles, which a restore gets back from the image. */
export interface SessionHandles {
  run: PyProxy;
  namespace: PyProxy;
  cancel: PyProxy;
  takeDenied: PyProxy;
  setAuthorized: PyProxy;
}

/** JavaScript objects Python holds that a checkpoint names by role (and a restore rebuilds). */
export type Role = "fetch" | "http" | "tools";

const state: {
  base?: Uint8Array;
  /** What the memory was at the last checkpoint taken or restored, for the next delta. */
  pages?: PageTracker;
  fresh?: FreshTree;
  tableBootLength?: number;
  bridges?: { core: PyProxy; importhook: PyProxy };
  roles: Map<unknown, Role>;
  mounts: string[];
  /** Packages restored from a checkpoint (Pyodide's own `loadedPackages` starts empty). */
  packages: Record<string, string>;
} = { roles: new Map(), mounts: [], packages: {} };

/** Pyodide's snapshot header: magic, offset of the image, JSON length, build id, then JSON. */
const PYODIDE_HEADER = 48;

/**
 * A restore prepared before Pyodide loads: Pyodide's snapshot header (its hiwire state), the
 * memory image as the base and the delta written over it, and what to re-attach.
 */
export interface RestorePlan {
  /** Pyodide's header alone: the image is written into the memory directly (`writeImage`). */
  snapshot: Uint8Array;
  /** The base image and the deltas written over it in order (the chain, then an older delta). */
  image: { base: Uint8Array; deltas: Uint8Array[]; bytes: number };
  meta: CheckpointMeta;
  sections: Uint8Array[];
  lost: Lost[];
  deserialize: (value: Any) => unknown;
  /** The new interpreter's Pyodide API and module, known once the module is made. */
  internals: { api?: Any; module?: Any };
  prepareMs: number;
}

/** Names a JavaScript object handed to Python, e.g. `moat.fetch`'s function. */
export function knownObject(value: unknown, role: Role): void {
  state.roles.set(value, role);
}

/** The policy's mounts: every boot copies them in, so checkpoints leave them out. */
export function setMounts(paths: string[]): void {
  state.mounts = paths;
}

/**
 * Reads a checkpoint and plans the memory: `base` with the session's chain of deltas (`links`)
 * written over it. `rebuild` makes each named JavaScript object again for this worker (its
 * policy decides).
 */
export async function prepareRestore(
  checkpoint: Uint8Array<ArrayBuffer>,
  links: Uint8Array[],
  base: Uint8Array,
  maxBytes: number,
  rebuild: Record<Role, () => unknown>,
): Promise<RestorePlan> {
  const started = performance.now();
  const { meta, sections } = await unpackCheckpoint(checkpoint, maxBytes * 2 + (64 << 20));
  const header = sections[meta.headerSection];
  // A checkpoint from before chains carries its one delta (against the base) itself.
  const deltas = meta.deltaSection === undefined ? links : [sections[meta.deltaSection]];
  if (deltas.length === 0) throw new Error("the checkpoint holds no memory");
  const bytes = Math.max(...deltas.map((d) => deltaInfo(d).imageBytes));
  const image = { base: baseImage(base), deltas, bytes };
  const snapshot = header.slice(); // its own buffer: Pyodide reads it as 32-bit words
  const lost: Lost[] = [...meta.lost];
  const internals: { api?: Any; module?: Any } = {};
  const deserialize = (value: Any) => {
    if (value?.role && value.role in rebuild) {
      const made = rebuild[value.role as Role]();
      knownObject(made, value.role);
      return made;
    }
    const owner = value?.api ? internals.api : value?.module ? internals.module : undefined;
    const key = value?.api ?? value?.module;
    if (owner && key in owner) return owner[key];
    if (value?.resolver) return settledStandIn();
    if (value && "primitive" in value) return unboxPrimitive(value.primitive);
    lost.push({ what: `a JavaScript object (${value?.what})`, why: "it cannot be rebuilt" });
    return Object.freeze(Object.create(null));
  };
  const prepareMs = performance.now() - started;
  return { snapshot, image, meta, sections, lost, deserialize, internals, prepareMs };
}

/**
 * Pyodide's module factory with the restore steps that must run before the memory image is
 * copied in: the fresh file tree is recorded, the checkpoint's files are written back and its
 * compiled libraries loaded again at their places. `planned` is asked only then, so a module
 * made before the checkpoint was known (a prepared worker) restores it: its image replaces the
 * boot snapshot Pyodide was given.
 */
export function restoringModule(
  factory: (settings: Any) => Promise<Any>,
  planned: () => RestorePlan | undefined,
): (settings: Any) => Promise<Any> {
  return async (settings) => {
    const module = await factory(settings);
    const api = module.API;
    const restore = api?.restoreSnapshot;
    if (typeof restore !== "function") return module;
    api.restoreSnapshot = (given: Uint8Array) => {
      state.fresh = freshTree(module.FS);
      const plan = planned();
      const snapshot = plan?.snapshot ?? given;
      if (plan) {
        plan.internals.api = api;
        plan.internals.module = module;
        growFor(module, plan.image.bytes);
        applyFiles(module.FS, plan.meta.files, plan.meta.removed, plan.sections);
        replayDylibs(module, plan.meta.dylibs, plan.meta.table, plan.lost);
        state.tableBootLength = plan.meta.table.bootLength;
        writeImage(module.HEAPU8, plan.image);
      }
      // With a plan, `snapshot` is the header alone: Pyodide reads its state, copies no memory.
      return restore(snapshot);
    };
    return module;
  };
}

/**
 * The wasm memory is defined in Pyodide's binary, so it starts at the size a fresh boot grows it
 * to, whatever the snapshot's size; a session's memory may have grown past it.
 */
function growFor(module: Any, imageBytes: number): void {
  if (module.HEAPU8.length < imageBytes) module._emscripten_resize_heap(imageBytes);
  if (module.HEAPU8.length < imageBytes) {
    throw new RangeError(
      `the checkpoint's memory (${imageBytes} bytes) does not fit this server's memory limit`,
    );
  }
}

const ZERO_CHUNK = 64 * 1024;

function isZero(words: Int32Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (words[i] !== 0) return false;
  return true;
}

/**
 * Writes the checkpoint's memory into the fresh heap: the base chunk by chunk, skipping chunks
 * zero in the base and in the heap alike (they never become resident), then each delta's
 * changed chunks over it, in order. One pass over the base, no full image built on the way.
 */
function writeImage(heap: Uint8Array, image: RestorePlan["image"]): void {
  const { base, deltas, bytes } = image;
  const words = (a: Uint8Array) =>
    a.byteOffset % 4 ? undefined : new Int32Array(a.buffer, a.byteOffset, a.length >> 2);
  const src = words(base);
  const dst = words(heap);
  /** Zeroes [from, to) of the heap unless it is zero already (untouched pages stay so). */
  const clear = (from: number, to: number) => {
    if (to <= from) return;
    if (!dst || from % 4 || to % 4 || !isZero(dst, from >> 2, to >> 2)) heap.fill(0, from, to);
  };
  for (let at = 0; at < bytes; at += ZERO_CHUNK) {
    const end = Math.min(at + ZERO_CHUNK, bytes);
    const to = Math.max(at, Math.min(end, base.length));
    if (to > at) {
      if (src && to % 4 === 0 && isZero(src, at >> 2, to >> 2)) clear(at, to);
      else heap.set(base.subarray(at, to), at);
    }
    clear(to, end); // past the base, the image is zero
  }
  for (const delta of deltas) writeDeltaChunks(delta, heap);
  state.pages = new PageTracker(base);
  state.pages.restored(heap.subarray(0, bytes), deltas);
}

/**
 * Fingerprints the base at boot, while the worker waits in the pool: a fresh session's first
 * checkpoint then compares instead of hashing it (a restore does it at its first checkpoint).
 */
export function preparePages(): void {
  if (state.pages || !state.base) return;
  state.pages = new PageTracker(baseImage(state.base));
  state.pages.prepare();
}

/** The memory image of a snapshot in Pyodide's layout (past its header). */
function baseImage(base: Uint8Array): Uint8Array {
  return base.subarray(new Uint32Array(base.buffer, base.byteOffset, 2)[1]);
}

/** Keeps what a checkpoint needs from the boot: the base snapshot and Pyodide's own modules. */
export function rememberBoot(py: PyodideAPI, base: Uint8Array | undefined): void {
  state.base = base;
  const api = (py as Any)._api;
  state.tableBootLength ??= (py as Any)._module.wasmTable.length;
  if (state.bridges) return;
  // Before the lockdown removes them: Pyodide's restore imports these by name.
  state.bridges = { core: py.pyimport("_pyodide_core"), importhook: api._pyodide._importhook };
  pinFixedSlots((py as Any)._module);
}

/**
 * After a restore: takes the session's handles out of the image, removes what was released for
 * the snapshot, reopens descriptors and brings back Pyodide's list of loaded packages.
 */
export function adoptRestored(py: PyodideAPI, plan: RestorePlan): SessionHandles {
  const api = (py as Any)._api;
  const modules = api.sys.modules;
  const stash = modules.get(STASH);
  state.bridges = {
    core: modules.get("_pyodide_core"),
    importhook: api._pyodide._importhook,
  };
  const handles = releaseForSnapshot(py, undefined, state.bridges);
  if (!stash) throw new Error("the checkpoint holds no Moat session");
  const get = (name: string) => stash.get(name) as PyProxy;
  const adopted = {
    run: get("run"),
    namespace: get("namespace"),
    cancel: get("cancel"),
    takeDenied: get("take_denied"),
    setAuthorized: get("set_authorized"),
  };
  stash.destroy();
  void handles;
  applyStreams(py.FS, plan.meta.streams, plan.lost);
  Object.assign(state.packages, plan.meta.packages);
  return adopted;
}

/** A checkpoint as taken: the packed description and files, and the memory's delta. */
export interface Taken {
  bytes: Uint8Array<ArrayBuffer>;
  /** The chunks that changed since the last checkpoint taken or restored (`full`: the base). */
  delta: Uint8Array<ArrayBuffer>;
  full: boolean;
  /** Names this checkpoint's memory, for the next one to be a delta against. */
  generation: number;
  lost: Lost[];
  imageBytes: number;
  chunks: number;
}

/**
 * Takes a checkpoint of the interpreter, which is idle (between calls): its memory as a delta
 * against the last checkpoint when that is `against` (the host stored it), else against the
 * base; and what could not go into it.
 */
export function takeCheckpoint(
  py: PyodideAPI,
  handles: SessionHandles,
  baseId: string,
  against?: number,
): Taken {
  if (!state.base || !state.fresh || !state.bridges) {
    throw new Error("this interpreter was not booted from a snapshot; it cannot checkpoint");
  }
  const module = (py as Any)._module;
  const api = (py as Any)._api;
  const lost: Lost[] = looseEnds(handles.run);
  const { files, removed, blobs } = captureFiles(py.FS, state.fresh, state.mounts, 1);
  const streams = captureStreams(py.FS, lost);
  const dylibs = captureDylibs(module, lost);
  const table = captureTable(module, state.tableBootLength ?? 0, dylibs, lost);
  let header: Uint8Array;
  let delta: Uint8Array<ArrayBuffer>;
  const pages = state.pages ??= new PageTracker(baseImage(state.base));
  const full = pages.atBase || against !== pages.generation;
  const release = releaseForSnapshot(py, handles, state.bridges);
  try {
    const internals = internalNames(api, module);
    const hiwire = withPrimitivesBoxed(module, (value: unknown) => {
      if (value instanceof Primitive) return { primitive: value.json };
      const role = state.roles.get(value);
      if (role) return { role };
      const internal = internals(value);
      if (internal) return internal;
      if (isResolver(value)) return { resolver: true };
      const what = describe(value);
      lost.push({
        what: `a JavaScript object (${what})`,
        why: "Python held it; it cannot be saved",
      });
      return { what };
    }, (serializer) => api.serializeHiwireState(serializer));
    header = pyodideHeader(state.base, JSON.stringify(hiwire));
    delta = pages.diff(module.HEAPU8, full);
  } finally {
    release.restore();
  }
  const meta: CheckpointMeta = {
    version: CHECKPOINT_VERSION,
    baseId,
    headerSection: 0,
    lost,
    packages: { ...state.packages, ...(py.loadedPackages as Record<string, string>) },
    files,
    removed,
    streams,
    dylibs,
    table,
  };
  const imageBytes = module.HEAPU8.length;
  const { chunks } = deltaInfo(delta);
  const bytes = packCheckpoint(meta, [header, ...blobs]);
  return { bytes, delta, full, generation: pages.generation, lost, imageBytes, chunks };
}

/** Pyodide's header for our hiwire JSON, with the base snapshot's magic and build id. */
function pyodideHeader(base: Uint8Array, json: string): Uint8Array {
  const encoded = new TextEncoder().encode(json);
  const start = Math.ceil((PYODIDE_HEADER + encoded.length) / 16) * 16;
  const header = new Uint8Array(start);
  header.set(base.subarray(0, PYODIDE_HEADER));
  const words = new Uint32Array(header.buffer);
  words[1] = start;
  words[2] = encoded.length;
  header.set(encoded, PYODIDE_HEADER);
  return header;
}
