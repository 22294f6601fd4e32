/**
 * A tenant's quotas (`limits` in `MOAT_TENANTS`): sessions held, sessions stored, and calls per
 * minute as a token bucket (a full minute's worth at most, refilled evenly), counted per instance.
 * Past one the request is a 429 naming the limit, with `Retry-After` where a wait helps.
 */
import { TooManyRequests } from "../errors.ts";
import type { Tenant, TenantLimits } from "./tenants.ts";

export class Quotas {
  #limits = new Map<string, TenantLimits>();
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(tenants: Tenant[] = []) {
    this.replace(tenants);
  }

  /** The tenants' limits now (a reload keeps each bucket's level). */
  replace(tenants: Tenant[]): void {
    this.#limits = new Map(tenants.map((t) => [t.name, t.limits]));
    for (const name of this.#buckets.keys()) {
      if (!this.#limits.has(name)) this.#buckets.delete(name);
    }
  }

  /** Takes one call of `tenant`'s `callsPerMinute`, or throws 429 saying when to retry. */
  takeCall(tenant: string, now = performance.now()): void {
    const perMinute = this.#limits.get(tenant)?.callsPerMinute;
    if (!perMinute) return;
    const bucket = this.#buckets.get(tenant) ?? { tokens: perMinute, at: now };
    bucket.tokens = Math.min(perMinute, bucket.tokens + (now - bucket.at) * perMinute / 60_000);
    bucket.at = now;
    this.#buckets.set(tenant, bucket);
    if (bucket.tokens < 1) {
      const wait = Math.ceil((1 - bucket.tokens) * 60 / perMinute);
      throw new TooManyRequests(
        `Tenant '${tenant}' is at its limits.callsPerMinute (${perMinute}); retry in ${wait} s`,
        wait,
      );
    }
    bucket.tokens -= 1;
  }

  /** 429 when `tenant` already holds its `limits.sessions` (`held`) or `storedSessions`. */
  checkCreate(tenant: string, held: number, stored: number): void {
    const limits = this.#limits.get(tenant);
    if (limits?.sessions !== undefined && held >= limits.sessions) {
      throw new TooManyRequests(
        `Tenant '${tenant}' holds its limits.sessions (${limits.sessions}); delete one ` +
          "(DELETE /v1/sessions/{id}) or wait for idle ones to expire",
      );
    }
    if (limits?.storedSessions !== undefined && stored >= limits.storedSessions) {
      throw new TooManyRequests(
        `Tenant '${tenant}' has its limits.storedSessions (${limits.storedSessions}) stored; ` +
          "delete one first",
      );
    }
  }
}
