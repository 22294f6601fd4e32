/**
 * Prints the `deno run` flags the server needs for a policy, and nothing wider:
 *
 *   MOAT_POLICY=strict deno run --allow-read --allow-env scripts/flags.ts
 *   deno task flags            # the same for the current MOAT_* settings
 *
 * `deno task start` runs `deno run $(this script --start) main.ts`. When the policy or a setting
 * is invalid it prints flags that only let `main.ts` read the policy and report the problem
 * (with `--start` it leaves the report to main.ts, so the problem is printed once).
 */
import { readConfig } from "../src/config.ts";
import { loadPolicy, resolvePolicyPath } from "../src/policy/load.ts";
import { absolute, bootstrapFlags, flagsFor, grantsForAll } from "../src/permissions/flags.ts";
import { loadTenants, tenantPolicies, tokenVariables } from "../src/tenants/tenants.ts";

/** The flags for the settings `get` returns (Deno.env.get when run as a script). */
export async function flagsForSettings(
  get: (name: string) => string | undefined,
  report: (line: string) => void = console.error,
): Promise<string[]> {
  let policyPath: string | undefined;
  // Tenants' policy files, readable even when one is invalid, so main.ts can say what is wrong.
  let tenantPaths: string[] = [];
  try {
    policyPath = resolvePolicyPath(get("MOAT_POLICY") || "default");
    if (!policyPath.startsWith("/")) policyPath = `${Deno.cwd()}/${policyPath}`;
    // The token is irrelevant to the flags; a placeholder keeps readConfig from generating one.
    const config = readConfig((name) => name === "MOAT_TOKEN" ? "x".repeat(16) : get(name));
    const { policy } = await loadPolicy(policyPath);
    const tenantsPath = config.tenants;
    const list = tenantsPath ? await loadTenants(tenantsPath) : [];
    tenantPaths = list.flatMap((t) => t.policy ? [absolute(resolvePolicyPath(t.policy))] : []);
    const tenants = tenantsPath ? { path: tenantsPath, env: tokenVariables(list) } : undefined;
    // Each tenant's own policy adds what it needs: its hosts, indexes, mounts, variables.
    const { policies } = await tenantPolicies(list, policyPath);
    return flagsFor(grantsForAll(policy, {
      tenants,
      host: config.host,
      port: config.port,
      policyPath,
      store: config.store,
      advertise: config.advertiseUrl,
    }, policies));
  } catch (err) {
    report(`moat: ${(err as Error).message}`);
    return bootstrapFlags(policyPath, get("MOAT_TENANTS") || undefined, tenantPaths);
  }
}

if (import.meta.main) {
  // `--start`: the start task's call. main.ts reports a bad setting or policy itself (once), so
  // this call prints the bootstrap flags and says nothing.
  const report = Deno.args.includes("--start") ? () => {} : undefined;
  console.log((await flagsForSettings((name) => Deno.env.get(name), report)).join(" "));
}
