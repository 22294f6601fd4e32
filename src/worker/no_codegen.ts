/**
 * Code generation from strings, refused in this worker even where the process could not be
 * started with `--v8-flags=--disallow-code-generation-from-strings` (Deno Deploy passes no flags
 * and reserves `DENO_*` variables, so `DENO_V8_FLAGS` cannot be set there either). `eval`,
 * `Function` and every function's `constructor` (Function, AsyncFunction, GeneratorFunction,
 * AsyncGeneratorFunction) throw, and the timers refuse a string; `instanceof Function` still
 * works (the stand-in keeps the real prototype). Installed when this module is first imported,
 * before Pyodide loads; Pyodide generates no code from strings on its paths Moat uses (it runs
 * under the V8 flag).
 */

/** What every blocked route throws. */
function refuse(): never {
  throw new EvalError("Code generation from strings is disallowed in this worker");
}

function install(): void {
  // deno-lint-ignore no-explicit-any
  const kinds: any[] = [
    function () {},
    async function () {},
    function* () {},
    async function* () {},
  ];
  for (const sample of kinds) {
    const proto = Object.getPrototypeOf(sample);
    const name = proto.constructor.name;
    const blocked = function () {
      refuse();
    };
    Object.defineProperty(blocked, "name", { value: name });
    Object.defineProperty(blocked, "prototype", { value: proto });
    Object.defineProperty(proto, "constructor", {
      value: blocked,
      writable: false,
      enumerable: false,
      configurable: false,
    });
  }
  const blockedFunction = Object.getPrototypeOf(function () {}).constructor;
  for (const name of ["Function", "eval"] as const) {
    Object.defineProperty(globalThis, name, {
      value: name === "Function" ? blockedFunction : refuse,
      writable: false,
      configurable: false,
    });
  }
  for (const timer of ["setTimeout", "setInterval"] as const) {
    const original = globalThis[timer] as unknown as (...args: unknown[]) => unknown;
    const guarded = (handler: unknown, ...rest: unknown[]) => {
      if (typeof handler !== "function") refuse();
      return original(handler, ...rest);
    };
    Object.defineProperty(globalThis, timer, { value: guarded, writable: false });
  }
}

install();

/** Whether a string still compiles as code here (the deploy-mode check asks the probe). */
export function codeFromStrings(): boolean {
  const tries = [
    () => (function () {}).constructor("return 1")(),
    () => (async function () {}).constructor("return 1"),
    () => new Function("return 1")(),
    () => (0, eval)("1"),
  ];
  return tries.some((attempt) => {
    try {
      attempt();
      return true;
    } catch {
      return false;
    }
  });
}
