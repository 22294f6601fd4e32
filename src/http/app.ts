import { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { acceptHops } from "../cluster/forward.ts";
import type { HopVerifier } from "../cluster/hop.ts";
import { HTTPException } from "hono/http-exception";
import { errorBody, MoatError, TooManyRequests } from "../errors.ts";
import { SessionFiles } from "../files/ops.ts";
import type { Metrics } from "../metrics.ts";
import type { McpHttp } from "../mcp/http.ts";
import type { Policy } from "../policy/schema.ts";
import type { SessionManager } from "../session/manager.ts";
import { authenticate, ownSessions, tenantOf } from "./principal.ts";
import { Tokens } from "../tenants/tenants.ts";
import { docsRoutes } from "./docs.ts";
import { fileRoutes } from "./files.ts";
import { type Readiness, readyRoutes } from "./ready.ts";
import { mcpRoutes } from "./mcp.ts";
import { metricsRoutes } from "./metrics.ts";
import { json, openApiDocument, serve } from "./openapi.ts";
import { HealthSchema } from "./schemas.ts";
import { sessionRoutes } from "./sessions.ts";
import { smolagentsRoutes } from "./smolagents.ts";
import { toolRoutes } from "./tools.ts";

/** What the app needs from start-up. */
export interface AppOptions {
  token: string;
  /** The operator's and the tenants' tokens (`MOAT_TENANTS`); absent: `token` alone. */
  tokens?: Tokens;
  /** `MOAT_METRICS_TOKEN`: opens `/metrics` only. */
  metricsToken?: string;
  policy: Policy;
  sessions: SessionManager;
  /** What `/metrics` serves. */
  metrics: Metrics;
  /** MCP over Streamable HTTP at `/mcp`, behind the same token. */
  mcp?: McpHttp;
  /** Facts for `/health`, e.g. interpreters ready in the pool. */
  health: () => Record<string, unknown>;
  /** What `GET /health/ready` reports (see `readiness` in src/http/ready.ts). */
  ready?: () => Promise<Readiness>;
  /**
   * Several instances on one store (src/cluster/): forwarded requests are accepted when their
   * `moat-hop` header verifies, and requests for a session another instance runs go there.
   */
  cluster?: { hops: HopVerifier; forward: MiddlewareHandler };
}

/** Readiness when start-up gave no check (unit tests of the routes): never ready. */
function notConfigured(): Promise<Readiness> {
  return Promise.resolve({
    status: "not-ready",
    notReady: ["no readiness check is configured"],
    poolReady: 0,
    store: "unreachable",
    instance: "local",
  });
}

/**
 * The Hono app: health, docs, metrics, auth, body limit, routes; every failure becomes a JSON
 * error body. Every route is defined with `serve` (openapi.ts), so `/openapi.json` lists it;
 * test/openapi_test.ts fails when one is not.
 */
export function createApp(options: AppOptions): OpenAPIHono {
  const { sessions } = options;
  const app = new OpenAPIHono();

  // Routes that need no token.
  serve(app, {
    method: "get",
    path: "/health",
    tags: ["operations"],
    summary: "Liveness, for load balancers (no token)",
    security: [],
    responses: {
      200: json(HealthSchema, "The server is serving."),
      503: json(HealthSchema, "The server is shutting down."),
    },
  }, (c) => {
    const status = sessions.closing ? "stopping" : "ok";
    return c.json({ status, ...options.health() }, sessions.closing ? 503 : 200);
  });
  app.route("/", readyRoutes(options.ready ?? notConfigured, () => sessions.closing));
  app.route("/", docsRoutes(() => openApiDocument(app)));
  app.route(
    "/",
    metricsRoutes(options.metrics, [
      options.token,
      ...(options.metricsToken ? [options.metricsToken] : []),
    ]),
  );

  const tokens = options.tokens ?? new Tokens(options.token);
  const token = authenticate(tokens);
  const cluster = options.cluster;
  app.use("*", cluster ? acceptHops(cluster.hops, token, (name) => tokens.named(name)) : token);
  // The body limit of the request's tenant's policy (the operator's: the server's).
  const limiters = new Map<number, MiddlewareHandler>();
  app.use("*", (c, next) => {
    const maxSize = sessions.limitsFor(tenantOf(c)).bodyBytes;
    let limiter = limiters.get(maxSize);
    if (!limiter) {
      limiter = bodyLimit({
        maxSize,
        onError: (c) =>
          c.json(
            errorBody(
              "PayloadTooLarge",
              `The request body exceeds the policy's limit of ${maxSize} bytes`,
            ),
            413,
          ),
      });
      limiters.set(maxSize, limiter);
    }
    return limiter(c, next);
  });
  if (cluster) app.use("*", cluster.forward);
  // A tenant reaches only its own sessions: every route naming one asks first.
  app.use("*", ownSessions(sessions));
  // Routes behind the token. Each area is an OpenAPIHono of `serve`d routes, mounted here.
  const mcp = options.mcp;
  if (mcp) app.route("/", mcpRoutes(mcp));
  app.route("/", smolagentsRoutes(sessions));
  app.route("/", sessionRoutes(sessions));
  app.route("/", toolRoutes(sessions));
  app.route("/", fileRoutes(new SessionFiles(sessions)));

  app.notFound((c) =>
    c.json(errorBody("NotFound", `No route ${c.req.method} ${new URL(c.req.url).pathname}`), 404)
  );
  app.onError((err, c) => {
    if (err instanceof MoatError) {
      if (err instanceof TooManyRequests && err.retryAfter !== undefined) {
        c.header("Retry-After", String(err.retryAfter));
      }
      return c.json(errorBody(err.name, err.message), err.status);
    }
    if (err instanceof HTTPException) {
      const res = err.getResponse();
      if (res.headers.get("content-type")?.includes("json")) return res;
      return c.json(errorBody("HTTPError", err.message || res.statusText), err.status);
    }
    console.error(JSON.stringify({ event: "internal-error", message: String(err?.stack ?? err) }));
    return c.json(errorBody("InternalError", "An internal error occurred; it was logged"), 500);
  });
  return app;
}
