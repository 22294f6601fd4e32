/**
 * Calls go to the instance that runs the session, not the session to the instance that got the
 * call (issue 19). Any instance may receive any request (a round-robin balancer, a Kubernetes
 * Service); when the session's lease names another live instance that advertises an address,
 * the whole request is passed there, once, and its answer (SSE included) streamed back. When the
 * lease names an instance with no heartbeat (killed), this instance takes the lease over at once
 * and restores the session from its last checkpoint.
 */
import type { Tenant } from "../tenants/tenants.ts";
import { rawPathname } from "../files/path.ts";
import type { Context, MiddlewareHandler } from "hono";
import { logSecurity } from "../audit.ts";
import { errorBody } from "../errors.ts";
import { DEFAULT_SESSION, defaultSessionOf } from "../session/session.ts";
import type { Leases } from "../store/store.ts";
import { HOP_HEADER, hopHeader, type HopVerifier } from "./hop.ts";
import {
  HEARTBEAT_MS,
  HEARTBEAT_TTL_MS,
  type InstanceRecord,
  type Instances,
} from "./instances.ts";

/** Where a request goes: a Moat session, or an MCP session (bound to the instance it began on). */
type Target = { session: string } | { instance: string };

/** What `forwardToOwner` works with. */
export interface ForwardOptions {
  store: Leases;
  instances: Instances;
  /** Whether this instance holds the session's lease (no store read). */
  holds: (sessionId: string) => boolean;
  /** The hop key (`keys.ts`). */
  key: Uint8Array;
  /** Lease length for a takeover (the store's usual one). */
  leaseTtlMs: number;
  /** Counts forwards, takeovers and failed hops. */
  count?: (outcome: "forwarded" | "takeover" | "failed") => void;
  log?: (line: string) => void;
}

/** Separates the instance from the rest in an MCP session id (`mcpSessionId`). */
const MCP_SEPARATOR = "~";

/** An MCP session id that names the instance holding it, so any instance can route to it. */
export function mcpSessionId(instanceId: string): string {
  return `${instanceId}${MCP_SEPARATOR}${crypto.randomUUID()}`;
}

/**
 * The session (or MCP session's instance) a request is for, from its path alone; `/`, `/files`
 * and `/tool-results` are `defaultSession` (a tenant's own, or the operator's).
 */
export function targetOf(
  pathname: string,
  mcpSession?: string,
  defaultSession = DEFAULT_SESSION,
): Target | undefined {
  if (pathname === "/" || pathname === "/files" || pathname.startsWith("/files/")) {
    return { session: defaultSession };
  }
  if (pathname === "/tool-results") return { session: defaultSession };
  if (pathname === "/mcp") {
    const at = mcpSession?.indexOf(MCP_SEPARATOR) ?? -1;
    return at > 0 ? { instance: mcpSession!.slice(0, at) } : undefined;
  }
  const m = pathname.match(/^\/v1\/sessions\/([^/]+)(\/.*)?$/);
  if (!m) return undefined;
  try {
    return { session: decodeURIComponent(m[1]) };
  } catch {
    return undefined;
  }
}

/**
 * Refuses a forwarding header that does not verify (401, a `hop-refused` security event); one
 * that does stands in for the bearer token, which the forwarding instance already checked, and
 * names the tenant it belongs to, found in `tenantNamed` (this instance's tenants file).
 */
export function acceptHops(
  verifier: HopVerifier,
  requireToken: MiddlewareHandler,
  tenantNamed: (name: string) => Tenant | undefined = () => undefined,
): MiddlewareHandler {
  return async (c, next) => {
    const header = c.req.header(HOP_HEADER);
    if (header === undefined) return await requireToken(c, next);
    const url = new URL(c.req.url);
    const checked = verifier.verify(header, c.req.method, url.pathname + url.search);
    if (typeof checked === "string") {
      logSecurity("hop-refused", { reason: checked, path: url.pathname });
      return c.json(
        errorBody("Unauthorized", `The '${HOP_HEADER}' header was refused (${checked})`),
        401,
      );
    }
    if (checked.tenant) {
      const tenant = tenantNamed(checked.tenant);
      if (!tenant) {
        logSecurity("hop-refused", { reason: "unknown tenant", path: url.pathname });
        return c.json(
          errorBody("Unauthorized", `Tenant '${checked.tenant}' is not in this instance's tenants`),
          401,
        );
      }
      c.set("tenant", tenant);
    }
    await next();
  };
}

/** Request headers not passed on: the client's credentials and the connection's own. */
const DROPPED = [
  "authorization",
  "host",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "upgrade",
  "proxy-authorization",
  "content-length",
  "accept-encoding",
];

/** Whether fetch failed before the request reached the peer (so it certainly did not run). */
function neverSent(err: unknown): boolean {
  const text = `${(err as Error)?.message ?? err} ${(err as Error)?.cause ?? ""}`;
  return /connection refused|os error 111|ECONNREFUSED/i.test(text);
}

/** An answer saying the request is for a session another instance runs (see `hopped`). */
const MOVED = 421;

function unavailable(c: Context, message: string) {
  return c.json(errorBody("Unavailable", message), 503);
}

/** Routes session requests to the instance running the session (see the module comment). */
export function forwardToOwner(o: ForwardOptions): MiddlewareHandler {
  const me = o.instances.id;
  const reported = new Set<string>();
  /**
   * Where each session's calls went last, for a heartbeat interval: a busy session's calls then
   * cost no store read. Stale entries are harmless: the instance they name answers MOVED.
   */
  const owners = new Map<string, { peer: InstanceRecord; at: number }>();

  /** The live instance to pass the request to, or undefined to serve it here. */
  const ownerOf = async (target: Target, fresh = false): Promise<InstanceRecord | undefined> => {
    if ("instance" in target) {
      if (target.instance === me) return undefined;
      return await o.instances.lookup(target.instance, fresh).catch(() => undefined);
    }
    const id = target.session;
    if (o.holds(id)) return undefined;
    const known = owners.get(id);
    if (!fresh && known && performance.now() - known.at < HEARTBEAT_MS) return known.peer;
    owners.delete(id);
    // Up to three rounds: a takeover another instance won sends us to it.
    for (let round = 0; round < 3; round++) {
      const lease = await o.store.leaseHolder(id).catch(() => undefined);
      if (!lease || lease.instanceId === me) return undefined;
      const peer = await o.instances.lookup(lease.instanceId, fresh || round > 0)
        .catch(() => null);
      if (peer === null) return undefined; // the store is down: served here, as without peers
      if (peer) {
        if (owners.size >= 10_000) owners.delete(owners.keys().next().value!);
        owners.set(id, { peer, at: performance.now() });
        return peer;
      }
      // No heartbeat: the holder is dead. Take its lease now rather than wait out its expiry.
      if (await o.store.takeLease(id, lease.instanceId, me, o.leaseTtlMs).catch(() => false)) {
        o.count?.("takeover");
        o.log?.(
          `session ${id}: instance ${lease.instanceId} has no heartbeat; taken over from its ` +
            "last checkpoint",
        );
        return undefined;
      }
      if (o.holds(id)) return undefined;
    }
    return undefined;
  };

  /**
   * A forwarded request, where it arrives: served here, never passed on again, unless another
   * live instance holds the session's lease (it moved since the sender looked): then MOVED, and
   * the sender asks the store again.
   */
  const hopped = async (c: Context, next: () => Promise<void>, target: Target | undefined) => {
    if (target && "session" in target && !o.holds(target.session)) {
      const lease = await o.store.leaseHolder(target.session).catch(() => undefined);
      const live = lease && lease.instanceId !== me &&
        await o.instances.lookup(lease.instanceId).catch(() => undefined);
      if (live) {
        return c.json(
          errorBody("Moved", `Session '${target.session}' runs on '${lease.instanceId}'`),
          MOVED,
        );
      }
    }
    await next();
  };

  const pass = async (c: Context, peer: InstanceRecord, body: ArrayBuffer | undefined) => {
    const url = new URL(c.req.url);
    const path = url.pathname + url.search;
    const headers = new Headers(c.req.raw.headers);
    for (const name of DROPPED) headers.delete(name);
    // Passed on as it comes: fetch would otherwise ask for gzip and decompress it unasked.
    headers.set("accept-encoding", "identity");
    const tenant = c.get("tenant")?.name;
    headers.set(HOP_HEADER, hopHeader(o.key, me, peer.id, c.req.method, path, tenant));
    const res = await fetch(new URL(path, peer.url), {
      method: c.req.method,
      headers,
      body,
      redirect: "manual",
      signal: c.req.raw.signal,
    });
    const out = new Headers(res.headers);
    for (const name of ["connection", "keep-alive", "transfer-encoding"]) out.delete(name);
    out.set("moat-instance", peer.id);
    // Streams (SSE) pass through as they come; a plain answer is read whole first, which costs
    // less than a stream piped chunk by chunk between the two connections.
    const streamed = out.get("content-type")?.startsWith("text/event-stream");
    const answer = streamed ? res.body : await res.arrayBuffer();
    // A 204 (a tool result taken) has no body, and a Response refuses one, even empty.
    const empty = res.status === 204 || res.status === 304;
    return new Response(empty ? null : answer, { status: res.status, headers: out });
  };

  return async (c, next) => {
    const target = targetOf(
      c.req.path,
      c.req.header("mcp-session-id"),
      defaultSessionOf(c.get("tenant")?.name),
    );
    // One hop at most: a forwarded request is served where it arrives.
    if (c.req.header(HOP_HEADER) !== undefined) return await hopped(c, next, target);
    if (!target) return await next();
    let peer = await ownerOf(target);
    if (!peer?.url) return await next();
    // The hop sends a URL, which resolves '.' and '..': a path holding them would reach the
    // peer as another, accepted one. Refused here as every route refuses them.
    const raw = rawPathname(c.req.url);
    if (raw.includes("\\") || raw.split("/").some((s) => /^(\.|%2e){1,2}$/i.test(s))) {
      return c.json(
        errorBody("BadRequest", "The request path has '.' or '..' segments, which are refused"),
        400,
      );
    }
    const method = c.req.method;
    const body = method === "GET" || method === "HEAD" ? undefined : await c.req.arrayBuffer();
    const until = performance.now() + HEARTBEAT_TTL_MS + 2_000;
    let moves = 0;
    for (;;) {
      try {
        const res = await pass(c, peer, body);
        if (res.status !== MOVED || moves++ > 0) {
          o.count?.("forwarded");
          return res.status === MOVED
            ? unavailable(c, "The session is moving between instances; try again")
            : res;
        }
        await res.body?.cancel();
      } catch (err) {
        if ("session" in target) owners.delete(target.session);
        if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
          o.count?.("failed");
          if (!reported.has(peer.id)) {
            reported.add(peer.id);
            o.log?.(`cannot forward to ${peer.id} at ${peer.url}: ${(err as Error).message}`);
          }
          return unavailable(
            c,
            `This instance may not connect to ${peer.url}, where instance '${peer.id}' runs ` +
              "this session: its address is outside the network this server was granted " +
              "(docs/scaling.md, 'Forwarding')",
          );
        }
        if (!neverSent(err) || c.req.raw.signal.aborted) {
          o.count?.("failed");
          return unavailable(
            c,
            `Instance '${peer.id}', which runs this session, stopped answering during the ` +
              `request (${(err as Error).message}), so it may or may not have run; the ` +
              "session goes on from its last checkpoint. Check its state before repeating it",
          );
        }
        // Refused: it is going or gone. Once its heartbeat lapses, the session is taken over.
        if (performance.now() > until) {
          o.count?.("failed");
          return unavailable(
            c,
            `Instance '${peer.id}' at ${peer.url} refuses connections but still sends ` +
              "heartbeats; try again",
          );
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      peer = await ownerOf(target, true);
      if (!peer?.url) {
        // Served here: the body read above is given to the route again.
        if (body) c.req.raw = new Request(c.req.raw, { body });
        return await next();
      }
    }
  };
}
