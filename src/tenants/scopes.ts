/**
 * Which tenants run under a policy of their own, and that policy's scope (`src/scope.ts`). The
 * scopes are built at start-up, with the permissions the process was started with for them; a
 * reload (SIGHUP) may add and remove tenants but not change the policy of one.
 */
import type { Scope } from "../scope.ts";
import { type Tenant, TenantsError } from "./tenants.ts";

/** The server's own policy, in `#policyOf`. */
const SERVER = "";

export class TenantScopeMap {
  /** Scopes by their policy file's path. */
  readonly #scopes = new Map<string, Scope>();
  /** Every tenant of the list in force: its policy's path, or SERVER. */
  #policyOf = new Map<string, string>();

  add(scope: Scope): void {
    this.#scopes.set(scope.name, scope);
  }

  /** The scope of `tenant`'s sessions; undefined when it runs under the server's policy. */
  of(tenant: string): Scope | undefined {
    const path = this.#policyOf.get(tenant);
    return path ? this.#scopes.get(path) : undefined;
  }

  all(): Scope[] {
    return [...this.#scopes.values()];
  }

  /**
   * Throws when a new list (and its policies, from `tenantPolicies`) would change a tenant's
   * policy, or name one this process did not start with: its interpreters, checkpoint base and
   * permissions are made at start-up.
   */
  check(tenants: Tenant[], byTenant: Map<string, string>): void {
    for (const { name, policy } of tenants) {
      const path = byTenant.get(name) ?? SERVER;
      const before = this.#policyOf.get(name);
      if (before !== undefined && before !== path) {
        throw new TenantsError(
          `tenant '${name}': its policy changes only at a restart (its sessions run under ` +
            `${before || "the server's policy"})`,
        );
      }
      if (path !== SERVER && !this.#scopes.has(path)) {
        throw new TenantsError(
          `tenant '${name}': policy '${policy}' was not loaded at start-up; a new policy needs ` +
            "a restart (its permissions, interpreters and checkpoint base are made then)",
        );
      }
    }
  }

  /** Takes the list in force and its tenants' policies (`tenantPolicies`' `byTenant`). */
  assign(tenants: Tenant[], byTenant: Map<string, string>): void {
    this.#policyOf = new Map(tenants.map((t) => [t.name, byTenant.get(t.name) ?? SERVER]));
  }
}
