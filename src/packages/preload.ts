import type { Unavailable } from "../protocol/messages.ts";
import { unavailableOf } from "./failures.ts";
import type { PackageLoader, WheelPayload } from "./loader.ts";

/** How long start-up waits for the preload list before serving without what is missing. */
const PRELOAD_FETCH_MS = 60_000;

/**
 * Fetches the policy's preload list once at start-up, for every pre-started interpreter to
 * install before it is handed out. What cannot be had is said in one line and start-up goes on;
 * `unavailable` makes a later `import` of it in any session raise with the reason.
 */
export async function fetchPreload(
  loader: PackageLoader,
  log: (line: string) => void,
): Promise<{ wheels: WheelPayload[]; unavailable: Unavailable[] }> {
  const names = loader.rules.preload;
  if (names.length === 0) return { wheels: [], unavailable: [] };
  // Never released: every interpreter the pool boots installs these wheels, so they stay cached.
  const plan = await loader.plan(names, new Set(), AbortSignal.timeout(PRELOAD_FETCH_MS));
  if (plan.failed.length > 0) {
    const missing = plan.failed.map((f) => f.name).join(", ");
    log(
      `cannot preload ${missing} from ${loader.indexDescription}: ${plan.failed[0].reason}; ` +
        `serving without them (build a mirror with scripts/mirror_packages.ts and set packages.index)`,
    );
  }
  return { wheels: plan.wheels, unavailable: unavailableOf(plan.failed) };
}
