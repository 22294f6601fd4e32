/**
 * The header that marks a request one instance forwards to another, and proves it: signed with
 * the hop key (`keys.ts`) over who sends it, to whom, when, a nonce, the method, the path, and the
 * tenant whose token the client sent (`MOAT_TENANTS`; none for the operator's), so the receiver
 * applies that tenant's rules.
 * The receiver takes it in place of the client's bearer token (which is never passed on), only
 * when it is addressed to it, at most 30 s old, and not seen before (a captured header cannot be
 * replayed). A client that sends one of its own gets 401.
 */
import { sign, verify } from "./keys.ts";

/** The header's name. */
export const HOP_HEADER = "moat-hop";
/** How far a hop's time may be from the receiver's clock. */
const HOP_WINDOW_MS = 30_000;

function signed(
  from: string,
  to: string,
  at: number,
  nonce: string,
  method: string,
  path: string,
  tenant?: string,
) {
  return ["v1", from, to, at, nonce, method, path, ...(tenant ? [tenant] : [])].join("\n");
}

/** The header value for a request `from` forwards `to` another instance. */
export function hopHeader(
  key: Uint8Array,
  from: string,
  to: string,
  method: string,
  path: string,
  tenant?: string,
): string {
  const at = Date.now();
  const nonce = crypto.getRandomValues(new Uint8Array(12)).toHex();
  const mac = sign(key, signed(from, to, at, nonce, method, path, tenant));
  return `v1 ${from} ${to} ${at} ${nonce} ${mac}${tenant ? ` ${tenant}` : ""}`;
}

/** Checks hop headers addressed to one instance, remembering nonces while they are valid. */
export class HopVerifier {
  readonly #seen = new Map<string, number>();

  constructor(private readonly key: Uint8Array, private readonly instanceId: string) {}

  /**
   * The sending instance's id when `header` is a valid hop to this instance for this request;
   * otherwise a sentence saying why not.
   */
  verify(header: string, method: string, path: string): { from: string; tenant?: string } | string {
    const [v, from, to, at, nonce, mac, tenant] = header.split(" ");
    if (v !== "v1" || !from || !to || !nonce || !mac) return "malformed";
    if (to !== this.instanceId) return `addressed to instance '${to}', not this one`;
    const time = Number(at);
    const now = Date.now();
    if (!Number.isFinite(time) || Math.abs(now - time) > HOP_WINDOW_MS) return "expired";
    if (!verify(this.key, signed(from, to, time, nonce, method, path, tenant), mac)) {
      return "bad signature";
    }
    if (this.#seen.has(nonce)) return "replayed";
    this.#seen.set(nonce, time);
    // Forget nonces whose time window has passed (they could not verify again anyway): the
    // oldest come first, in the order they arrived.
    for (const [n, t] of this.#seen) {
      if (now - t <= 2 * HOP_WINDOW_MS) break;
      this.#seen.delete(n);
    }
    return tenant ? { from, tenant } : { from };
  }
}
