import { Hono } from "hono";
import { DEFAULT_SESSION, type SessionManager } from "../session/manager.ts";
import { ExecBodySchema, readJson } from "./body.ts";

/** GET/POST at `/` and `/v1/sessions/:id`: the protocol smolagents' WasmExecutor spoke. */
export function smolagentsRoutes(sessions: SessionManager): Hono {
  const app = new Hono();
  const exec = (id: string) => async (c: import("hono").Context) => {
    const body = await readJson(c, ExecBodySchema);
    const answer = await sessions.exec(id, body);
    return c.body(answer.body, 200, { "content-type": "application/json; charset=utf-8" });
  };
  app.get("/", (c) => c.json(sessions.get(DEFAULT_SESSION)));
  app.post("/", exec(DEFAULT_SESSION));
  app.get("/v1/sessions/:id", (c) => c.json(sessions.get(c.req.param("id"))));
  app.post("/v1/sessions/:id", (c) => exec(c.req.param("id"))(c));
  return app;
}
