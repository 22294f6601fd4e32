import { tenantOf } from "./principal.ts";
import { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import type { SessionManager } from "../session/manager.ts";
import { AuthorizedImportsSchema, readJson } from "./body.ts";
import { errors, json, jsonBody, serve } from "./openapi.ts";
import { SessionIdParams, SessionInfoSchema } from "./schemas.ts";

/** The body of `POST /v1/sessions` (optional: an empty body makes a persistent session). */
export const CreateBodySchema = z.object({
  mode: z.enum(["persistent", "ephemeral"], {
    error: "must be 'persistent' or 'ephemeral'",
  }).default("persistent").meta({
    description: "`persistent` keeps state between calls; `ephemeral` starts each call clean.",
  }),
  authorizedImports: AuthorizedImportsSchema.optional().meta({
    description: "Modules (and `pkg.*` patterns) every call may import beyond smolagents' " +
      "standard ones, enforced in the sandbox; absent or `['*']`: no rule.",
  }),
}, { error: "must be a JSON object" }).meta({
  id: "CreateSessionRequest",
  examples: [{ mode: "persistent" }, { mode: "ephemeral" }],
});

/** The session API (PROTOCOL.md §3); executing in a session lives in `smolagents.ts`. */
export function sessionRoutes(sessions: SessionManager): OpenAPIHono {
  const app = new OpenAPIHono();
  const tags = ["sessions"];
  const params = SessionIdParams;
  serve(app, {
    method: "post",
    path: "/v1/sessions",
    tags,
    summary: "Create a session",
    request: { body: jsonBody(CreateBodySchema, "The session's mode (optional).", false) },
    responses: {
      201: json(SessionInfoSchema, "The new session."),
      ...errors(400, 401, 413, 429, 503),
    },
  }, async (c) => {
    const hasBody = (c.req.header("content-length") ?? "0") !== "0" ||
      c.req.header("transfer-encoding") !== undefined;
    const body = hasBody ? await readJson(c, CreateBodySchema) : CreateBodySchema.parse({});
    return c.json(
      await sessions.create(body.mode, {
        authorizedImports: body.authorizedImports,
        owner: tenantOf(c),
      }),
      201,
    );
  });
  serve(app, {
    method: "get",
    path: "/v1/sessions",
    tags,
    summary: "List sessions",
    responses: {
      200: json(
        z.object({ sessions: z.array(SessionInfoSchema) }),
        "Every session (a tenant's token: its own).",
      ),
      ...errors(401),
    },
  }, (c) => c.json({ sessions: sessions.list(tenantOf(c)) }));
  serve(app, {
    method: "post",
    path: "/v1/sessions/{id}/reset",
    tags,
    summary: "Give a session a clean interpreter (after its queued calls)",
    request: { params },
    responses: { 200: json(SessionInfoSchema, "The reset session."), ...errors(401, 404) },
  }, async (c) => c.json(await sessions.reset(c.req.param("id")!)));
  serve(app, {
    method: "delete",
    path: "/v1/sessions/{id}",
    tags,
    summary: "Delete a session at once, even mid-call",
    request: { params },
    responses: {
      200: json(z.object({ deleted: z.string() }), "The session is gone."),
      ...errors(401, 404),
    },
  }, async (c) => {
    const id = c.req.param("id")!;
    await sessions.delete(id);
    return c.json({ deleted: id });
  });
  return app;
}
