import { Hono } from "hono";
import { z } from "zod";
import type { SessionManager } from "../session/manager.ts";
import { AuthorizedImportsSchema, readJson } from "./body.ts";

const CreateBodySchema = z.object({
  mode: z.enum(["persistent", "ephemeral"], {
    error: "must be 'persistent' or 'ephemeral'",
  }).default("persistent"),
  authorizedImports: AuthorizedImportsSchema.optional(),
}, { error: "must be a JSON object" });

/** The session API (PROTOCOL.md §3); executing in a session lives in `smolagents.ts`. */
export function sessionRoutes(sessions: SessionManager): Hono {
  const app = new Hono();
  app.post("/v1/sessions", async (c) => {
    const hasBody = (c.req.header("content-length") ?? "0") !== "0" ||
      c.req.header("transfer-encoding") !== undefined;
    const body = hasBody ? await readJson(c, CreateBodySchema) : CreateBodySchema.parse({});
    return c.json(sessions.create(body.mode, { authorizedImports: body.authorizedImports }), 201);
  });
  app.get("/v1/sessions", (c) => c.json({ sessions: sessions.list() }));
  app.post("/v1/sessions/:id/reset", async (c) => c.json(await sessions.reset(c.req.param("id"))));
  app.delete("/v1/sessions/:id", (c) => {
    sessions.delete(c.req.param("id"));
    return c.json({ deleted: c.req.param("id") });
  });
  return app;
}
