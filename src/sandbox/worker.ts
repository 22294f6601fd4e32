/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * One session's interpreter. Loads Pyodide, drops every permission, then runs calls the host
 * sends. Python sees an empty `js` module; the host enforces time and replaces this worker when
 * it breaks, so nothing here trusts the code it runs.
 */
import { loadPyodide, type PyodideAPI } from "pyodide";
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
    const all = new Uint8Array(this.kept);
    let at = 0;
    for (const c of this.chunks) {
      all.set(c, at);
      at += c.length;
    }
    return new TextDecoder().decode(all);
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

/** Refuses growth of any WebAssembly memory past the cap, so Python gets MemoryError. */
function capMemory(maxBytes: number): void {
  const grow = WebAssembly.Memory.prototype.grow;
  Object.defineProperty(WebAssembly.Memory.prototype, "grow", {
    value: function (this: WebAssembly.Memory, pages: number) {
      if (this.buffer.byteLength + pages * 65536 > maxBytes) {
        throw new RangeError(`memory limit of ${maxBytes} bytes reached`);
      }
      return grow.call(this, pages);
    },
    writable: false,
    configurable: false,
  });
}

/** After boot the worker needs no permission at all. */
function dropPermissions(): void {
  const names = ["read", "write", "net", "env", "run", "ffi", "sys", "import"] as const;
  for (const name of names) Deno.permissions.revokeSync({ name } as Deno.PermissionDescriptor);
}

async function boot(msg: BootMessage): Promise<void> {
  const started = performance.now();
  caps = msg.caps;
  interrupt = new Int32Array(msg.interrupt);
  capMemory(msg.memoryBytes);
  const pyodide = await loadPyodide({
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
