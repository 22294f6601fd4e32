import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { errorBody, MoatError } from "../errors.ts";
import type { McpHttp } from "../mcp/http.ts";
import type { Policy } from "../policy/schema.ts";
import type { SessionManager } from "../session/manager.ts";
import { requireToken } from "./auth.ts";
import { sessionRoutes } from "./sessions.ts";
import { smolagentsRoutes } from "./smolagents.ts";

/** What the app needs from start-up. */
export interface AppOptions {
  token: string;
  policy: Policy;
  sessions: SessionManager;
  /** MCP over Streamable HTTP at `/mcp`, behind the same token. */
  mcp?: McpHttp;
  /** Facts for `/health`, e.g. interpreters ready in the pool. */
  health: () => Record<string, unknown>;
}

/** The Hono app: health, auth, body limit, routes; every failure becomes a JSON error body. */
export function createApp(options: AppOptions): Hono {
  const { sessions, policy } = options;
  const app = new Hono();

  app.get("/health", (c) => {
    const status = sessions.closing ? "stopping" : "ok";
    return c.json({ status, ...options.health() }, sessions.closing ? 503 : 200);
  });

  app.use("*", requireToken(options.token));
  app.use(
    "*",
    bodyLimit({
      maxSize: policy.limits.bodyBytes,
      onError: (c) =>
        c.json(
          errorBody(
            "PayloadTooLarge",
            `The request body exceeds the policy's limit of ${policy.limits.bodyBytes} bytes`,
          ),
          413,
        ),
    }),
  );
  const mcp = options.mcp;
  if (mcp) app.all("/mcp", (c) => mcp.handle(c.req.raw));
  app.route("/", smolagentsRoutes(sessions));
  app.route("/", sessionRoutes(sessions));

  app.notFound((c) =>
    c.json(errorBody("NotFound", `No route ${c.req.method} ${new URL(c.req.url).pathname}`), 404)
  );
  app.onError((err, c) => {
    if (err instanceof MoatError) return c.json(errorBody(err.name, err.message), err.status);
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
