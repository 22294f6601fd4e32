import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";

function unauthorized(message: string) {
  return (_c: Context) =>
    Response.json({ error: { name: "Unauthorized", message } }, { status: 401 });
}

/** Requires the token configured at start-up; Hono compares it in constant time. */
export function requireToken(token: string): MiddlewareHandler {
  return bearerAuth({
    token,
    noAuthenticationHeader: {
      message: unauthorized("Missing header 'Authorization: Bearer <MOAT_TOKEN>'"),
    },
    invalidAuthenticationHeader: {
      message: unauthorized("The Authorization header must be 'Bearer <MOAT_TOKEN>'"),
    },
    invalidToken: { message: unauthorized("Wrong token") },
  });
}
