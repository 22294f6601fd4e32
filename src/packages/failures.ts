/** How a package that could not be had is explained: in stderr, and at a later `import`. */
import type { Unavailable } from "../protocol/messages.ts";
import type { PackageFailure } from "./loader.ts";

/** The one sentence that says a package was not loaded, and why. */
export function notLoaded(f: { name: string; reason: string }): string {
  return `package '${f.name}' was not loaded: ${f.reason}`;
}

/** The import names of failed packages, each with the reason a later import should raise. */
export function unavailableOf(failed: readonly PackageFailure[]): Unavailable[] {
  return failed.filter((f) => f.importNames.length > 0)
    .map((f) => ({ names: f.importNames, reason: notLoaded(f) }));
}
