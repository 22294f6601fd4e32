/** A call's packages, coordinated between the host-side loader and the session's interpreter. */
import { notLoaded, unavailableOf } from "../packages/failures.ts";
import type { PackageLoader } from "../packages/loader.ts";
import type { Interpreter } from "../sandbox/interpreter.ts";

/** The `packages` field of an answer: what this call's `packages` list came to. */
export interface PackagesReport {
  /** Installed by this call (dependencies included), in install order. */
  loaded: { name: string; version: string }[];
  /** Nothing to do: standard library, wildcard, already loaded in this session. */
  skipped: { name: string; reason: string }[];
  /** Refused by the policy, not found, or failed to download or install; `reason` says which. */
  failed: { name: string; reason: string }[];
}

/** An empty report, for calls that asked for nothing. */
export function emptyReport(): PackagesReport {
  return { loaded: [], skipped: [], failed: [] };
}

/**
 * Loads a call's packages into its interpreter before the code runs, within `timeoutMs`.
 * Packages the interpreter already has cost a set lookup; everything else is fetched on the
 * host and sent as bytes. Never throws: problems are in `failed`, and later imports of those
 * names raise ModuleNotFoundError with the same reason.
 */
export async function loadPackages(
  loader: PackageLoader,
  interpreter: Interpreter,
  entries: readonly string[],
  timeoutMs: number,
): Promise<PackagesReport> {
  const report = emptyReport();
  if (entries.length === 0) return report;
  const signal = AbortSignal.timeout(timeoutMs);
  const started = performance.now();
  const plan = await loader.plan(entries, interpreter.packages, signal);
  try {
    report.skipped = plan.skipped;
    const unavailable = unavailableOf(plan.failed);
    report.failed = plan.failed.map(({ name, reason }) => ({ name, reason }));
    if (plan.wheels.length === 0 && unavailable.length === 0) return report;
    const left = Math.max(1, timeoutMs - (performance.now() - started));
    const results = await interpreter.install(plan.wheels, unavailable, left);
    for (const [i, result] of results.entries()) {
      const wheel = plan.wheels[i];
      if (result.error) {
        report.failed.push({ name: wheel.name, reason: `could not be installed: ${result.error}` });
      } else report.loaded.push({ name: wheel.name, version: wheel.version });
    }
  } finally {
    // The wheels were in use by this install until here: the cache may evict them again.
    await plan.release();
  }
  return report;
}

/** Lines for stderr, so a failure shows up next to the code's own output. */
export function describeFailures(report: PackagesReport): string {
  return report.failed.map((f) => `moat: ${notLoaded(f)}\n`).join("");
}
