/** What every worker is handed, read or compiled once per process. */
import { PYODIDE_DIR, WORKER_DIR } from "../paths.ts";
import type { PythonSources } from "../protocol/messages.ts";

let compiled: Promise<WebAssembly.Module> | undefined;
/**
 * Pyodide's wasm module, compiled once in this process and posted to every worker, which then
 * only instantiates it (tens of milliseconds less per boot than compiling from the file).
 */
export function pyodideModule(): Promise<WebAssembly.Module> {
  return compiled ??= Deno.readFile(`${PYODIDE_DIR}pyodide.asm.wasm`).then((b) =>
    WebAssembly.compile(b)
  );
}

let sources: Promise<PythonSources> | undefined;
/** The Python a worker runs (`src/worker/python/`), read once. */
export function pythonSources(): Promise<PythonSources> {
  const read = (name: string) => Deno.readTextFile(`${WORKER_DIR}python/${name}.py`);
  const names = ["runner", "lockdown", "unavailable", "imports", "http"] as const;
  return sources ??= Promise.all(names.map(read)).then((
    [runner, lockdown, unavailable, imports, http],
  ) => ({ runner, lockdown, unavailable, imports, http }));
}
