import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { errorBody } from "../errors.ts";
import { sameBytes } from "../digest.ts";

function unauthorized(message: string) {
  return (_c: Context) => Response.json(errorBody("Unauthorized", message), { status: 401 });
}

const encoder = new TextEncoder();

/**
 * True when `given` is the expected token. The loop always runs over the expected token's
 * length and never stops early, so the time taken does not tell where the two differ. (Hono's
 * default hashes both with SHA-256 through crypto.subtle: same guarantee, two async digests per
 * request on the hot path.)
 */
function sameToken(expected: Uint8Array, given: string): boolean {
  return sameBytes(expected, encoder.encode(given));
}

/**
 * Requires one of the tokens configured at start-up, each compared in constant time (all are
 * compared, whichever matches).
 */
export function requireToken(...tokens: string[]): MiddlewareHandler {
  const expected = tokens.map((t) => encoder.encode(t));
  return bearerAuth({
    verifyToken: (given) => expected.reduce((ok, e) => sameToken(e, given) || ok, false),
    noAuthenticationHeader: {
      message: unauthorized("Missing header 'Authorization: Bearer <MOAT_TOKEN>'"),
    },
    invalidAuthenticationHeader: {
      message: unauthorized("The Authorization header must be 'Bearer <MOAT_TOKEN>'"),
    },
    invalidToken: { message: unauthorized("Wrong token") },
  });
}
