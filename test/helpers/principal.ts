/** Requests as one principal (a tenant's token, or the operator's), for the tenants tests. */
import type { TestServer } from "./server.ts";

/**
 * A request to `server` with `token` (undefined: the operator's, `MOAT_TOKEN`); a body is sent as
 * JSON unless a content type is given, and the answer's body parsed as JSON when it is.
 */
export async function as(
  server: TestServer,
  token: string | undefined,
  path: string,
  init: RequestInit = {},
  // deno-lint-ignore no-explicit-any
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token ?? server.token}`);
  if (init.body && !headers.has("content-type")) headers.set("content-type", "application/json");
  const res = await fetch(`${server.url}${path}`, { ...init, headers });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch { /* an event stream, or text */ }
  return { status: res.status, body, headers: res.headers };
}
