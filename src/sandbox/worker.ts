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
  MountEntry,
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
/** The runner's `cancel()`: stops a cell that is awaiting when its time runs out. */
let cancelCall: (() => void) | undefined;
/**
 * Ends an interrupted awaiting call whose task will never run again (the interrupt landed in the
 * event loop's own code, between the cell's steps); set only while such a call is pending.
 */
let abandonCall: (() => void) | undefined;
/** How long a cancelled cell gets to finish on its own before it is abandoned. */
const ABANDON_AFTER_MS = 100;
const ABANDONED = Symbol("abandoned");

/** The answer of an abandoned call: a KeyboardInterrupt, which the host reports as a timeout. */
const INTERRUPTED_ERROR = JSON.stringify({
  name: "PythonError",
  message: "KeyboardInterrupt",
  pythonExceptionType: "KeyboardInterrupt",
  pythonExceptionValue: "",
});
/** The lockdown's `take_denied()`: what it refused since the last call. */
let takeDenied: (() => PyProxy) | undefined;
/** imports.py's `set_authorized(json)`: the call's authorized imports, or null for no rule. */
let setAuthorized: ((json: string) => void) | undefined;

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

/**
 * V8's `gc` when the server runs with --expose-gc (see MEMORY_V8_FLAGS), taken off the global
 * object (writable, though not deletable) as this module loads, so no other code here sees it.
 */
const collectGarbage = (globalThis as { gc?: () => void }).gc;
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
  // Boot leaves ~12 MB of buffers (the wasm binary, the stdlib zip as read) that an idle worker
  // would otherwise keep until some later collection.
  collectGarbage?.();
}

// ---- end of the sessions section ----

/** After boot the worker needs no permission, except net for the policy's allowed hosts. */
function dropPermissions(keepNet: boolean): void {
  const names = ["read", "write", "net", "env", "run", "ffi", "sys", "import"] as const;
  for (const name of names) {
    if (name === "net" && keepNet) continue;
    Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
  }
}

// ---- Security: JavaScript-side bounds and the lockdown (see SECURITY.md) ----

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
 * `totalBytes`. Constructors reached through `.constructor` of any buffer are the capped ones.
 */
function capBuffers(maxBytes: number, totalBytes: number): void {
  // Sessions (performance): Deno.memoryUsage() costs ~10 µs, and every subarray() and slice()
  // of a typed array comes through here (Pyodide makes several per call to convert strings).
  // A view over an existing buffer allocates nothing; small allocations are added up and the
  // external total is read once per MiB of them, so the total may be passed by at most 1 MiB.
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
  const requested = (args: unknown[], unit: number) => {
    const [first, options] = args as [unknown, { maxByteLength?: number } | undefined];
    if (typeof first === "number") return Math.max(first, options?.maxByteLength ?? 0) * unit;
    if (first === undefined || first === null || isBuffer(first)) return 0;
    const like = first as { length?: unknown; byteLength?: unknown };
    return Number(like.length ?? like.byteLength ?? 0) * unit;
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
  const wrap = (ctor: Ctor, unit: number) => {
    const proxy = capped(ctor, (args) => requested(args, unit));
    Object.defineProperty(ctor.prototype, "constructor", { value: proxy, configurable: false });
    Object.defineProperty(globalThis, ctor.name, { value: proxy, configurable: false });
  };
  for (const ctor of TYPED_ARRAYS) wrap(ctor, ctor.BYTES_PER_ELEMENT);
  wrap(ArrayBuffer, 1);
  wrap(SharedArrayBuffer, 1);
  const guard = (proto: object, name: string) => {
    const original = Reflect.get(proto, name) as ((...a: unknown[]) => unknown) | undefined;
    if (typeof original !== "function") return;
    Object.defineProperty(proto, name, {
      value: function (this: unknown, ...args: unknown[]) {
        if (typeof args[0] === "number") check(args[0]);
        return original.apply(this, args);
      },
      configurable: false,
    });
  };
  for (const name of ["resize", "transfer", "transferToFixedLength"]) {
    guard(ArrayBuffer.prototype, name);
  }
  guard(SharedArrayBuffer.prototype, "grow");
  const Memory = WebAssembly.Memory;
  const memory = capped(Memory, (args) => {
    return Number((args[0] as { initial?: number } | undefined)?.initial ?? 0) * 65536;
  });
  Object.defineProperty(Memory.prototype, "constructor", { value: memory, configurable: false });
  Object.defineProperty(WebAssembly, "Memory", { value: memory, configurable: false });
}

function hostAllowed(url: URL, allowed: string[]): boolean {
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return allowed.some((entry) => entry === url.hostname || entry === `${url.hostname}:${port}`);
}

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

/**
 * `moat.fetch` seen from JavaScript: only http(s) to the policy's hosts, no redirects, and the
 * answer as JSON text, so Python receives no JavaScript object.
 */
function fetchJson(allowed: string[], maxBytes: number) {
  const realFetch = fetch;
  return async (url: string, optionsJson: string): Promise<string> => {
    try {
      const target = new URL(url);
      if (!/^https?:$/.test(target.protocol) || !hostAllowed(target, allowed)) {
        return JSON.stringify({ error: `host '${target.host}' is not in network.allow` });
      }
      const options = JSON.parse(optionsJson);
      const body = options.body
        ? Uint8Array.from(atob(options.body), (c) => c.charCodeAt(0))
        : undefined;
      const res = await realFetch(target, {
        method: String(options.method),
        headers: options.headers,
        body,
        redirect: "manual",
      });
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.length > maxBytes) {
        return JSON.stringify({ error: `response of ${bytes.length} bytes exceeds the limit` });
      }
      const headers = Object.fromEntries(res.headers);
      return JSON.stringify({ status: res.status, headers, body: toBase64(bytes) });
    } catch (err) {
      return JSON.stringify({ error: String((err as Error)?.message ?? err) });
    }
  };
}

/** Copies the policy's mounts in, read-only (0444 files, 0555 directories). */
function writeMounts(pyodide: PyodideAPI, entries: MountEntry[]): void {
  for (const entry of entries) {
    if (entry.bytes) {
      pyodide.FS.mkdirTree(entry.path.slice(0, entry.path.lastIndexOf("/")) || "/");
      pyodide.FS.writeFile(entry.path, entry.bytes);
    } else pyodide.FS.mkdirTree(entry.path);
  }
  for (const entry of entries.toReversed()) {
    pyodide.FS.chmod(entry.path, entry.bytes ? 0o444 : 0o555);
  }
}

/** Runs `python/lockdown.py`; from here on Python code has no handle on this worker's JS. */
function lockDown(pyodide: PyodideAPI, msg: BootMessage): void {
  pyodide.unregisterJsModule("js");
  pyodide.unregisterJsModule("pyodide_js");
  const scope = pyodide.globals.get("dict")();
  pyodide.runPython(msg.lockdown, { globals: scope, filename: "<moat-lockdown>" });
  const install = scope.get("install");
  const importsScope = pyodide.globals.get("dict")();
  pyodide.runPython(msg.imports, { globals: importsScope, filename: "<moat-imports>" });
  const guardImports = importsScope.get("install");
  const fetcher = msg.network.length ? fetchJson(msg.network, msg.memoryBytes / 4) : undefined;
  const installed = install(fetcher, guardImports);
  takeDenied = installed.get(0);
  setAuthorized = installed.get(1);
  for (const proxy of [installed, guardImports, importsScope, install, scope]) proxy.destroy();
  capBuffers(msg.memoryBytes, 2 * msg.memoryBytes + 256 * 1024 * 1024);
}

/**
 * The runner builds its JSON with Python's `json`, which user code can patch; text that is not
 * one valid JSON value would let code inject fields into the answer or break the host's parse.
 */
function checkedJson(result: string, error: string): [string, string] {
  const valid = (text: string) => {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  };
  if (valid(result) && valid(error)) return [result, error];
  const message = "RuntimeError: the answer could not be encoded as JSON " +
    "(was the json module patched?); restore it or reset the session";
  return [
    "null",
    JSON.stringify({
      name: "PythonError",
      message,
      pythonExceptionType: "RuntimeError",
      pythonExceptionValue: message.slice("RuntimeError: ".length),
    }),
  ];
}

// ---- end of security section ----

/**
 * Runs `load` with WebAssembly.instantiate answering Pyodide's request to instantiate its wasm
 * binary with the module the host compiled once; the rest of the worker never sees the change.
 */
async function withCompiled<T>(module: WebAssembly.Module | undefined, load: () => Promise<T>) {
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

async function boot(msg: BootMessage): Promise<void> {
  const started = performance.now();
  caps = msg.caps;
  interrupt = new Int32Array(msg.interrupt);
  held.push(msg.lifeline);
  capMemory(msg.memoryBytes, new Int32Array(msg.stats));
  const pyodide = await withCompiled(msg.wasmModule, () =>
    loadPyodide({
      createPyodideModule: leanPyodideModule,
      indexURL: msg.indexPath,
      jsglobals: Object.create(null),
      env: { HOME: "/home/pyodide" },
      stdout: () => {},
      stderr: () => {},
      _makeSnapshot: msg.makeSnapshot,
      _loadSnapshot: msg.snapshot,
    }));
  if (msg.makeSnapshot) {
    // Modules the runner needs are imported before the snapshot so every boot skips them.
    pyodide.runPython("import ast, base64, json, linecache, math, os, sys, traceback, builtins");
    // Installing a wheel imports these (tarfile and importlib.metadata take ~100 ms each).
    pyodide.runPython(
      "import encodings.cp437, importlib.metadata, pathlib, shutil, tarfile, zipfile",
    );
    const bytes = pyodide.makeMemorySnapshot() as Uint8Array<ArrayBuffer>;
    dropPermissions(false);
    post({ type: "snapshot", id: msg.id, bytes }, [bytes.buffer as ArrayBuffer]);
    return;
  }
  dropPermissions(msg.network.length > 0);
  pyodide.setStdout({ write: (b: Uint8Array) => stdout.write(b) });
  pyodide.setStderr({ write: (b: Uint8Array) => stderr.write(b) });
  pyodide.setInterruptBuffer(interrupt);
  // Every interpreter restored from one snapshot shares its random state; give each its own.
  pyodide.runPython("import sys\nif 'random' in sys.modules: sys.modules['random'].seed()");
  const runnerGlobals = pyodide.globals.get("dict")();
  pyodide.runPython(msg.runner, { globals: runnerGlobals, filename: "<moat>" });
  runCode = runnerGlobals.get("run") as typeof runCode;
  namespace = runnerGlobals.get("new_namespace")();
  cancelCall = runnerGlobals.get("cancel");
  writeMounts(pyodide, msg.mounts);
  lockDown(pyodide, msg);
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
    // JSON text, so no JavaScript object reaches Python.
    setAuthorized?.(JSON.stringify(msg.authorizedImports ?? null));
    let out: PyProxy | undefined = runCode(msg.code, namespace, caps.resultBytes);
    if (typeof out?.then === "function") {
      const pending = out;
      const abandoned = new Promise<typeof ABANDONED>((resolve) => {
        abandonCall = () => resolve(ABANDONED);
      });
      const settled = await Promise.race([pending, abandoned]);
      abandonCall = undefined;
      out = settled === ABANDONED ? undefined : settled;
      if (out) pending.destroy?.();
    }
    if (out) {
      const triple = out.toJs();
      out.destroy();
      [result, error, resultCut] = triple;
      [result, error] = checkedJson(result, error);
    } else error = INTERRUPTED_ERROR;
  } catch (err) {
    // The runner catches every Python exception, so this is the interpreter itself failing.
    fatal = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  } finally {
    Atomics.store(interrupt, 0, 0);
  }
  let denied: string[] | undefined;
  try {
    const taken = takeDenied?.();
    denied = taken?.toJs() as string[] | undefined;
    taken?.destroy();
  } catch {
    // the lockdown's record is best effort; the call's answer matters more
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
    denied: denied?.length ? denied : undefined,
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
  } else if (msg.type === "interrupt") {
    // No Python is running while a message is handled: the flag would only hit the event loop's
    // next step, so it is cleared and the awaiting cell is cancelled instead.
    Atomics.store(interrupt, 0, 0);
    try {
      cancelCall?.();
    } catch {
      // nothing is running any more
    }
    abandonLater();
  }
};

/** Abandons the call pending now (not a later one) if it has not finished after a moment. */
function abandonLater(): void {
  const abandon = abandonCall;
  if (abandon) setTimeout(abandon, ABANDON_AFTER_MS);
}

// A KeyboardInterrupt that lands in the event loop's own code (between a cell's steps) escapes
// as a rejected promise; during an awaiting call it is that call's timeout, not a crash.
self.addEventListener("unhandledrejection", (event) => {
  const reason = String((event as PromiseRejectionEvent).reason ?? "");
  if (abandonCall && /\nKeyboardInterrupt\s*$/.test(reason)) {
    event.preventDefault();
    abandonLater();
  }
});
