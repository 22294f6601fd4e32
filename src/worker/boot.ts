/**
 * Booting: Pyodide is loaded (from the memory snapshot when the host sends one), permissions
 * are dropped, the runner and the lockdown are installed, and the hot paths are warmed up.
 * Making the snapshot itself is a boot that stops before any of that.
 */
import { loadPyodide, type PyodideAPI } from "pyodide";
import type { PyProxy } from "pyodide/ffi";
import type {
  BootRequest,
  OutputCaps,
  PrepareRequest,
  Reply,
  Restored,
  SnapshotRequest,
} from "../protocol/messages.ts";
import { withAllocatorHook } from "./checkpoint/dylibs.ts";
import {
  adoptRestored,
  preparePages,
  prepareRestore,
  rememberBoot,
  type RestorePlan,
  restoringModule,
  setMounts,
  takeCheckpoint,
} from "./checkpoint/snapshot.ts";
import { Output } from "./capture.ts";
import { makeWorkDir } from "./files.ts";
import { writeMounts } from "./fs.ts";
import { capBuffers, capMemory } from "./limits.ts";
import { dropPermissions, lockDown } from "./lockdown.ts";
import { installKillSwitch } from "./kill_switch.ts";
import { legacyFetch } from "./network.ts";
import { callTool, sendHttp } from "./tools.ts";
import { Packages } from "./packages.ts";
import { type FileQuota, quotaFiles } from "./fs_quota.ts";
import { collectGarbage, leanPyodideModule, withCompiled } from "./pyodide.ts";

/**
 * The runner's `run(code, namespace, limit, tools?)`: a result triple, or a promise of one;
 * `tools` is JSON text of the call's host tools and code mode's catalog, when there are any.
 */
export type RunCode = (code: string, ns: PyProxy, limit: number, tools?: string) => PyProxy;

/** A booted interpreter, as the worker's request handlers use it. */
export interface Live {
  py: PyodideAPI;
  run: RunCode;
  /** The session's globals. */
  namespace: PyProxy;
  /** The runner's `cancel()`: stops a cell that is awaiting when its time runs out. */
  cancel: () => void;
  /** The lockdown's `take_denied()`: what it refused since the last call. */
  takeDenied: () => PyProxy;
  /** The lockdown's `set_authorized(json)`: the call's authorized imports, or `null`. */
  setAuthorized: (json: string) => void;
  /** What `setAuthorized` was last given (`"null"` when unset): a checkpoint lifts the rule. */
  authorized?: string;
  packages: Packages;
  output: Output;
  caps: OutputCaps;
  /** Pyodide's interrupt buffer, shared with the host. */
  interrupt: Int32Array;
  /** What the session's files hold, within `limits.filesBytes`. */
  files: FileQuota;
}

/** Modules imported before the snapshot is taken, so that no boot pays for them. */
const SNAPSHOT_IMPORTS = [
  // What the runner needs.
  "import ast, base64, json, linecache, math, os, sys, traceback, builtins",
  // What installing a wheel imports (tarfile and importlib.metadata take ~100 ms each).
  "import encodings.cp437, importlib.metadata, pathlib, shutil, tarfile, zipfile",
];

/** What Python may see of its process: nothing of the host's (see `hideHost`). */
const SANDBOX_EXECUTABLE = "/usr/bin/python3";

/**
 * Loads Pyodide. Every interpreter may be checkpointed (`_makeSnapshot`), and every boot, the
 * one that makes the boot snapshot included, hooks the allocator so that a restore can load
 * compiled libraries at the places they had (see `checkpoint/dylibs.ts`).
 */
function load(
  msg: { indexPath: string; wasmModule?: WebAssembly.Module },
  options: {
    snapshot?: Uint8Array;
    plan?: RestorePlan;
    /** Pyodide's module factory; a prepared worker's waits for its boot request. */
    factory?: (settings: unknown) => Promise<unknown>;
    /** The restore, when it is known only after the load started (a prepared worker). */
    planned?: () => RestorePlan | undefined;
  },
): Promise<PyodideAPI> {
  const { plan } = options;
  const planned = options.planned ?? (() => plan);
  return withCompiled(msg.wasmModule, () =>
    withAllocatorHook(() =>
      loadPyodide({
        createPyodideModule: restoringModule(options.factory ?? leanPyodideModule, planned),
        indexURL: msg.indexPath,
        jsglobals: Object.create(null),
        env: { HOME: "/home/pyodide" },
        stdout: () => {},
        stderr: () => {},
        _makeSnapshot: true,
        // A restore writes its image itself (`restoringModule`); Pyodide gets the boot snapshot.
        _loadSnapshot: options.snapshot,
        _snapshotDeserializer: (value: unknown) => {
          const restore = planned();
          if (!restore) {
            throw new Error("the snapshot holds JavaScript objects; no restore is planned");
          }
          return restore.deserialize(value);
        },
      })
    ));
}

/** A load started before its boot request: module made, wasm instantiated, then it waits. */
export interface PreparedLoad {
  /** Resolves once the wasm is instantiated (the worker is then warm). */
  ready: Promise<void>;
  /** Lets the load go on: it restores `plan`, or boots the boot snapshot when none. */
  open(plan: RestorePlan | undefined): Promise<PyodideAPI>;
}

/**
 * Writes one byte of every page of a fresh heap, in place, while the worker waits in the pool.
 * The first write to a page of fresh memory faults it in; here that costs about 3 ms a megabyte
 * (`scripts/bench_fingerprint.ts`: 91 ms for 30 MiB, 1.9 ms once touched), which the restore
 * no longer pays.
 */
function prefault(heap: Uint8Array): void {
  for (let at = 0; at < heap.length; at += 4096) heap[at] |= 0;
}

/**
 * Starts loading Pyodide ahead of any session, so a restore finds its module made and its wasm
 * instantiated; the worker holds nothing of a session until `open`. Used once per worker.
 */
export function prepareLoad(msg: PrepareRequest): PreparedLoad {
  let plan: RestorePlan | undefined;
  let instantiated!: () => void;
  let go!: () => void;
  const ready = new Promise<void>((resolve) => instantiated = resolve);
  const gate = new Promise<void>((resolve) => go = resolve);
  const factory = async (settings: unknown) => {
    const module = await leanPyodideModule(settings);
    prefault(module.HEAPU8);
    instantiated();
    await gate;
    return module;
  };
  const py = load(msg, { snapshot: msg.snapshot, factory, planned: () => plan });
  py.catch(() => instantiated()); // a failed load is reported by `open`
  return {
    ready,
    open: (restore) => {
      plan = restore;
      go();
      return py;
    },
  };
}

/**
 * Removes what Emscripten copied from the host process into Python's view of itself: the
 * worker's script path (the server's install directory) as `sys.executable`, `sys.argv` and
 * `os.environ['_']`. Run before the snapshot is taken, so no snapshot holds them, and after
 * every boot.
 */
function hideHost(py: PyodideAPI): void {
  py.runPython(`
import os, sys
sys.executable = sys._base_executable = ${JSON.stringify(SANDBOX_EXECUTABLE)}
sys.argv = [""]
sys.orig_argv = [${JSON.stringify(SANDBOX_EXECUTABLE)}]
os.environ.pop("_", None)
`);
}

/** Boots cold and returns the memory snapshot every later boot restores. */
export async function makeSnapshot(msg: SnapshotRequest): Promise<Uint8Array<ArrayBuffer>> {
  const py = await load(msg, {});
  for (const line of SNAPSHOT_IMPORTS) py.runPython(line);
  hideHost(py);
  const bytes = py.makeMemorySnapshot() as Uint8Array<ArrayBuffer>;
  dropPermissions();
  return bytes;
}

/**
 * Runs the paths every call takes (a result, printing, a traceback, top-level await) once before
 * the interpreter is handed out, so a session's first call does not pay for them. The runner's
 * cell counter is reset, so the session's first cell is still `<cell 1>`.
 */
async function warmUp(live: Live, runnerGlobals: PyProxy): Promise<void> {
  const scratch = live.py.globals.get("dict")();
  const cells = [
    "x = [1, 'a', {'b': 2.5}]\nprint(x)\nx",
    "1/0",
    "import asyncio\nawait asyncio.sleep(0)",
  ];
  for (const cell of cells) {
    let out = live.run(cell, scratch, live.caps.resultBytes);
    if (typeof out?.then === "function") {
      const pending = out;
      out = await pending;
      pending.destroy?.();
    }
    out?.destroy?.();
  }
  scratch.destroy();
  runnerGlobals.set("_cell", 0);
  // Boot leaves ~12 MB of buffers (the wasm binary, the stdlib zip as read) that an idle worker
  // would otherwise keep until some later collection.
  collectGarbage?.();
}

/**
 * Boots a session's interpreter, fresh or restored from a checkpoint; from its end on, the
 * worker holds no permission.
 */
export async function boot(
  msg: BootRequest,
  prepared?: PreparedLoad,
): Promise<{ live: Live; restored?: Restored }> {
  capMemory(msg.memoryBytes, new Int32Array(msg.stats));
  // A restore rebuilds the full image from the delta base and the checkpoint's chain of deltas.
  const base = msg.deltaBase ?? msg.snapshot;
  const plan = msg.checkpoint && base
    ? await prepareRestore(msg.checkpoint, msg.links ?? [], base, msg.memoryBytes, {
      // The host checks every request against the policy of now, whatever the checkpoint knew.
      fetch: () => legacyFetch,
      http: () => sendHttp,
      tools: () => callTool,
    })
    : undefined;
  const py = prepared
    ? await prepared.open(plan)
    : await load(msg, { snapshot: msg.snapshot, plan });
  dropPermissions();
  const output = new Output();
  py.setStdout({ write: (b: Uint8Array) => output.stdout.write(b) });
  py.setStderr({ write: (b: Uint8Array) => output.stderr.write(b) });
  const interrupt = new Int32Array(msg.interrupt);
  py.setInterruptBuffer(interrupt);
  installKillSwitch(py, interrupt);
  if (plan) return adopt(py, msg, plan, { base, output, interrupt });
  hideHost(py);
  // Every interpreter restored from one snapshot shares its random state; give each its own.
  py.runPython("import sys\nif 'random' in sys.modules: sys.modules['random'].seed()");
  const runnerGlobals = py.globals.get("dict")();
  py.runPython(msg.python.runner, { globals: runnerGlobals, filename: "<moat>" });
  const run = runnerGlobals.get("run") as RunCode;
  const namespace = runnerGlobals.get("new_namespace")();
  const cancel = runnerGlobals.get("cancel");
  writeMounts(py, msg.mounts);
  makeWorkDir(py);
  setMounts(msg.mounts.map((m) => m.path));
  rememberBoot(py, base); // before the lockdown hides Pyodide's modules
  const { takeDenied, setAuthorized, tools } = lockDown(py, {
    source: msg.python.lockdown,
    imports: msg.python.imports,
    http: msg.python.http,
    network: msg.network,
    memoryBytes: msg.memoryBytes,
  });
  runnerGlobals.set("_moat_tools", tools);
  tools.destroy();
  const packages = new Packages(py, msg.python.unavailable);
  const live: Live = {
    py,
    run,
    namespace,
    cancel,
    takeDenied,
    setAuthorized,
    packages,
    output,
    caps: msg.caps,
    interrupt,
    files: quotaFiles(py, msg.filesBytes, new Int32Array(msg.stats)),
  };
  await warmUp(live, runnerGlobals);
  runnerGlobals.destroy();
  preparePages();
  return { live };
}

/**
 * A restored image holds the runner, the lockdown and the session: the worker takes its handles
 * back, and re-attaches what lives outside the image (mounts, the buffer caps).
 */
function adopt(
  py: PyodideAPI,
  msg: BootRequest,
  plan: RestorePlan,
  parts: { base?: Uint8Array; output: Output; interrupt: Int32Array },
): { live: Live; restored: Restored } {
  const started = performance.now();
  const handles = adoptRestored(py, plan);
  rememberBoot(py, parts.base);
  setMounts(msg.mounts.map((m) => m.path));
  writeMounts(py, msg.mounts);
  makeWorkDir(py);
  capBuffers(msg.memoryBytes, 2 * msg.memoryBytes + 256 * 1024 * 1024);
  const live: Live = {
    py,
    run: handles.run as unknown as RunCode,
    namespace: handles.namespace,
    cancel: handles.cancel as unknown as () => void,
    takeDenied: handles.takeDenied as unknown as () => PyProxy,
    setAuthorized: handles.setAuthorized as unknown as (json: string) => void,
    packages: new Packages(py, msg.python.unavailable),
    output: parts.output,
    caps: msg.caps,
    interrupt: parts.interrupt,
    files: quotaFiles(py, msg.filesBytes, new Int32Array(msg.stats)),
  };
  // What the checkpoint brought back counts, except Pyodide's own files and the mounts.
  live.files.recount(["/lib", "/dev", "/proc", ...msg.mounts.map((m) => m.path)]);
  const restored = {
    prepareMs: plan.prepareMs,
    lost: plan.lost,
    packages: Object.keys(plan.meta.packages),
    adoptMs: performance.now() - started,
  };
  return { live, restored };
}

/** Takes a checkpoint of the idle interpreter (only ever between calls). */
export function checkpoint(
  live: Live,
  baseId: string,
  against?: number,
): Reply<"checkpoint"> {
  const started = performance.now();
  const handles = {
    run: live.run as unknown as PyProxy,
    namespace: live.namespace,
    cancel: live.cancel as unknown as PyProxy,
    takeDenied: live.takeDenied as unknown as PyProxy,
    setAuthorized: live.setAuthorized as unknown as PyProxy,
  };
  // The image is taken with no rule in force: Pyodide's own start-up code imports what it
  // needs when the image is restored, before any call sets the session's rule again.
  const rule = live.authorized ?? "null";
  if (rule !== "null") live.setAuthorized("null");
  try {
    const taken = takeCheckpoint(live.py, handles, baseId, against);
    return { ...taken, ms: performance.now() - started };
  } finally {
    if (rule !== "null") live.setAuthorized(rule);
  }
}

/** Linear memory of the interpreter, in bytes. */
export function memoryBytes(live: Live | undefined): number {
  // deno-lint-ignore no-explicit-any
  return (live?.py as any)?._module?.HEAPU8?.buffer?.byteLength ?? 0;
}
