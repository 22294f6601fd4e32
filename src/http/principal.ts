/**
 * Who a request is, and which sessions it reaches. The operator's token (`MOAT_TOKEN`) reaches
 * every session; a tenant's token (`MOAT_TENANTS`) only its own, and another tenant's session
 * answers exactly as one that does not exist (404), on every route that names one.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { errorBody } from "../errors.ts";
import type { SessionManager } from "../session/manager.ts";
import { defaultSessionOf } from "../session/session.ts";
import type { Tenant, Tokens } from "../tenants/tenants.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** The tenant the request's token belongs to; unset for the operator. */
    tenant?: Tenant;
  }
}

function unauthorized(message: string) {
  return (_c: Context) => Response.json(errorBody("Unauthorized", message), { status: 401 });
}

/** Requires the operator's token or a tenant's, and records whose it is. */
export function authenticate(tokens: Tokens): MiddlewareHandler {
  return bearerAuth({
    verifyToken: (given, c) => {
      const principal = tokens.identify(given);
      if (principal?.tenant) c.set("tenant", principal.tenant);
      return principal !== undefined;
    },
    noAuthenticationHeader: {
      message: unauthorized("Missing header 'Authorization: Bearer <MOAT_TOKEN>'"),
    },
    invalidAuthenticationHeader: {
      message: unauthorized("The Authorization header must be 'Bearer <MOAT_TOKEN>'"),
    },
    invalidToken: { message: unauthorized("Wrong token") },
  });
}

/** The name of the request's tenant; undefined for the operator. */
export function tenantOf(c: Context): string | undefined {
  return c.get("tenant")?.name;
}

/** The session the default routes (`/`, `/files`, `/tool-results`) mean for this request. */
export function defaultSession(c: Context): string {
  return defaultSessionOf(tenantOf(c));
}

/** `/v1/sessions/{id}` and everything under it. */
const NAMED = /^\/v1\/sessions\/([^/]+)/;

/** Every route under `/v1/sessions/{id}`: 404 unless the request's tenant owns that session. */
export function ownSessions(sessions: SessionManager): MiddlewareHandler {
  return async (c, next) => {
    const tenant = tenantOf(c);
    const named = tenant && c.req.path.match(NAMED);
    if (named) {
      let id: string | undefined;
      try {
        id = decodeURIComponent(named[1]);
      } catch {
        id = undefined; // not a session id any route takes: the routes answer
      }
      if (id !== undefined) await sessions.assertOwner(id, tenant);
    }
    await next();
  };
}
