/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * One session's interpreter. Loads Pyodide, drops every permission, then runs calls the host
 * sends. Python sees an empty `js` module; the host enforces time and replaces this worker when
 * it breaks, so nothing here trusts the code it runs.
 */
import { loadPyodide, type PyodideAPI } from "pyodide";
import createPyodideModule from "pyodide/pyodide.asm.mjs";
import type { PyProxy } from "pyodide/ffi";
import { explainMissing, installWheels } from "../packages/install.ts";
import type {
  BootMessage,
  ExecMessage,
  HostMessage,
  InstallMessage,
  OutputCaps,
  WorkerMessage,
} from "./messages.ts";

const post = (msg: WorkerMessage, transfer: Transferable[] = []) => self.postMessage(msg, transfer);

const decoder = new TextDecoder();

/** Output of the call in progress; a call never sees another call's output. */
class Capture {
  private chunks: Uint8Array[] = [];
  private kept = 0;
  cut = false;
  constructor(private readonly cap: number) {}
  write = (buf: Uint8Array): number => {
    const room = this.cap - this.kept;
    if (buf.length > room) this.cut = true;
    if (room > 0) {
      const part = buf.slice(0, Math.min(room, buf.length));
      this.chunks.push(part);
      this.kept += part.length;
    }
    return buf.length;
  };
  text(): string {
    if (this.kept === 0) return "";
    const all = new Uint8Array(this.kept);
    let at = 0;
    for (const c of this.chunks) {
      all.set(c, at);
      at += c.length;
    }
    return decoder.decode(all);
  }
}

let py: PyodideAPI | undefined;
/** The runner's `run(code, namespace, limit)`. */
let runCode: ((code: string, ns: PyProxy, limit: number) => PyProxy) | undefined;
let namespace: PyProxy | undefined;
let caps: OutputCaps;
let interrupt: Int32Array;
let stdout = new Capture(0);
let stderr = new Capture(0);
/**
 * The lifeline port, held for the worker's whole life and never used: when this thread ends for
 * any reason, the port closes and the host learns at once that the interpreter is gone.
 */
const held: unknown[] = [];

/**
 * Refuses growth of any WebAssembly memory past the cap, so Python gets MemoryError; reports
 * each growth in `stats[0]` (64 KiB pages) so the host sees memory in use even mid-call.
 */
function capMemory(maxBytes: number, stats: Int32Array): void {
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

// ---- Sessions: a lean boot (see README, "Sessions and limits") ----

const CHUNK = 64 * 1024;

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
async function leanPyodideModule(settings: any): Promise<any> {
  const module = await createPyodideModule(settings);
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
 * Runs the paths every call takes (a result, printing, a traceback, top-level await) once before
 * the interpreter is handed out, so a session's first call does not pay for them. The runner's
 * cell counter is reset, so the session's first cell is still `<cell 1>`.
 */
async function warmUp(pyodide: PyodideAPI, runnerGlobals: PyProxy): Promise<void> {
  if (!runCode) return;
  const scratch = pyodide.globals.get("dict")();
  const cells = [
    "x = [1, 'a', {'b': 2.5}]\nprint(x)\nx",
    "1/0",
    "import asyncio\nawait asyncio.sleep(0)",
  ];
  for (const cell of cells) {
    let out = runCode(cell, scratch, caps.resultBytes);
    if (typeof out?.then === "function") {
      const pending = out;
      out = await pending;
      pending.destroy?.();
    }
    out?.destroy?.();
  }
  scratch.destroy();
  runnerGlobals.set("_cell", 0);
}

// ---- end of the sessions section ----

/** After boot the worker needs no permission at all. */
function dropPermissions(): void {
  const names = ["read", "write", "net", "env", "run", "ffi", "sys", "import"] as const;
  for (const name of names) Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
}

async function boot(msg: BootMessage): Promise<void> {
  const started = performance.now();
  caps = msg.caps;
  interrupt = new Int32Array(msg.interrupt);
  held.push(msg.lifeline);
  capMemory(msg.memoryBytes, new Int32Array(msg.stats));
  const pyodide = await loadPyodide({
    createPyodideModule: leanPyodideModule,
    indexURL: msg.indexPath,
    jsglobals: Object.create(null),
    env: { HOME: "/home/pyodide" },
    stdout: () => {},
    stderr: () => {},
    _makeSnapshot: msg.makeSnapshot,
    _loadSnapshot: msg.snapshot,
  });
  if (msg.makeSnapshot) {
    // Modules the runner needs are imported before the snapshot so every boot skips them.
    pyodide.runPython("import ast, base64, json, linecache, math, os, sys, traceback, builtins");
    // Installing a wheel imports these (tarfile and importlib.metadata take ~100 ms each).
    pyodide.runPython(
      "import encodings.cp437, importlib.metadata, pathlib, shutil, tarfile, zipfile",
    );
    const bytes = pyodide.makeMemorySnapshot() as Uint8Array<ArrayBuffer>;
    dropPermissions();
    post({ type: "snapshot", id: msg.id, bytes }, [bytes.buffer as ArrayBuffer]);
    return;
  }
  dropPermissions();
  pyodide.setStdout({ write: (b: Uint8Array) => stdout.write(b) });
  pyodide.setStderr({ write: (b: Uint8Array) => stderr.write(b) });
  pyodide.setInterruptBuffer(interrupt);
  // Every interpreter restored from one snapshot shares its random state; give each its own.
  pyodide.runPython("import sys\nif 'random' in sys.modules: sys.modules['random'].seed()");
  const runnerGlobals = pyodide.globals.get("dict")();
  pyodide.runPython(msg.runner, { globals: runnerGlobals, filename: "<moat>" });
  runCode = runnerGlobals.get("run") as typeof runCode;
  namespace = runnerGlobals.get("new_namespace")();
  await warmUp(pyodide, runnerGlobals);
  runnerGlobals.destroy();
  py = pyodide;
  post({
    type: "ready",
    id: msg.id,
    bootMs: performance.now() - started,
    memoryBytes: memoryBytes(),
  });
}

function memoryBytes(): number {
  // deno-lint-ignore no-explicit-any
  return (py as any)?._module?.HEAPU8?.buffer?.byteLength ?? 0;
}

async function exec(msg: ExecMessage): Promise<void> {
  stdout = new Capture(caps.stdoutBytes);
  stderr = new Capture(caps.stderrBytes);
  let result = "null";
  let error = "null";
  let resultCut = false;
  let fatal: string | undefined;
  try {
    if (!py || !runCode || !namespace) throw new Error("interpreter is not booted");
    let out = runCode(msg.code, namespace, caps.resultBytes);
    if (typeof out?.then === "function") {
      const pending = out;
      out = await pending;
      pending.destroy?.();
    }
    const triple = out.toJs();
    out.destroy();
    [result, error, resultCut] = triple;
  } catch (err) {
    // The runner catches every Python exception, so this is the interpreter itself failing.
    fatal = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  } finally {
    Atomics.store(interrupt, 0, 0);
  }
  post({
    type: "result",
    id: msg.id,
    result,
    error,
    stdout: stdout.text(),
    stderr: stderr.text(),
    cut: { stdout: stdout.cut, stderr: stderr.cut, result: resultCut },
    memoryBytes: memoryBytes(),
    fatal,
  });
}

/** Installs the wheels of a call (or of the preload list) before its code runs. */
async function install(msg: InstallMessage): Promise<void> {
  let results: { name: string; error?: string }[];
  if (!py) {
    results = msg.wheels.map((w) => ({ name: w.name, error: "interpreter is not booted" }));
  } else {
    try {
      results = await installWheels(py, msg.wheels);
      explainMissing(py, msg.unavailable);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      results = msg.wheels.map((w) => ({ name: w.name, error: message }));
    }
  }
  post({ type: "installed", id: msg.id, results, memoryBytes: memoryBytes() });
}

self.onmessage = (event: MessageEvent<HostMessage>) => {
  const msg = event.data;
  if (msg.type === "boot") {
    boot(msg).catch((err) =>
      post({ type: "boot-failed", id: msg.id, message: String(err?.message ?? err) })
    );
  } else if (msg.type === "exec") {
    exec(msg);
  } else if (msg.type === "install") {
    install(msg);
  }
};
