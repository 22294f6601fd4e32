/**
 * The start task's memory flags (`MEMORY_V8_FLAGS` in src/permissions/flags.ts), applied at run
 * time where no flag can be passed (Deno Deploy): V8 reads them when it creates an isolate, so
 * every worker started afterwards gets 1 MiB semi-spaces, and `gc` for collecting its boot
 * garbage (src/worker/gc.ts). About 80 MB less for an idle instance with two interpreters.
 * (`--disallow-code-generation-from-strings` does not take effect this way; src/worker/no_codegen.ts
 * covers it in the workers.)
 */
import { setFlagsFromString } from "node:v8";

/** Turns the memory flags on for isolates created from now on. */
export function applyMemoryFlags(): void {
  setFlagsFromString("--max-semi-space-size=1");
  setFlagsFromString("--expose-gc");
}
