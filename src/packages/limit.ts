/**
 * `packages.maxPerCall`: how many entries one call's `packages` list may hold. Checked before
 * anything is queued, classified or fetched, so a body of 100 000 names costs its JSON parse and
 * a 400, not seconds of the main thread and megabytes of stderr.
 */
import { BadRequest } from "../errors.ts";

/** @throws BadRequest (400) naming the limit when `packages` has more than `max` entries. */
export function assertPackageCount(packages: readonly string[] | undefined, max: number): void {
  const count = packages?.length ?? 0;
  if (count <= max) return;
  throw new BadRequest(
    `Field 'packages' lists ${count} entries, more than the policy's packages.maxPerCall ` +
      `(${max}); send only the packages this code needs`,
  );
}
