import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { errorBody } from "../errors.ts";
import type { SessionManager } from "../session/manager.ts";
import { defaultSession } from "./principal.ts";
import { readJson, ToolResultSchema } from "./body.ts";
import { errors, jsonBody, serve } from "./openapi.ts";
import { ErrorSchema, SessionIdParams } from "./schemas.ts";

const request = jsonBody(ToolResultSchema, "The answer to one `tool_call` event.");
const responses = {
  204: { description: "Python has the result (or the ToolError) and goes on." },
  ...errors(400, 401),
  404: {
    description: "No such session, or no call of this id waits in it (unknown, already " +
      "answered, given up at `limits.toolCallMs`, or another session's).",
    content: { "application/json": { schema: ErrorSchema } },
  },
  413: {
    description: "The result is above the policy's `limits.resultBytes`: Python got a " +
      "ToolError saying so instead.",
    content: { "application/json": { schema: ErrorSchema } },
  },
};

/**
 * `POST /v1/sessions/{id}/tool-results` (and `/tool-results` for the default session): a
 * streamed call's client answers a `tool_call` event here (PROTOCOL.md §6).
 */
export function toolRoutes(sessions: SessionManager): OpenAPIHono {
  const app = new OpenAPIHono();
  const answer = async (c: Context, id: string) => {
    const body = await readJson(c, ToolResultSchema);
    const outcome = "error" in body && body.error !== undefined
      ? { error: body.error }
      : { result: body.result };
    const answered = await sessions.answerTool(id, body.id, outcome);
    if (answered === "unknown") {
      return c.json(
        errorBody(
          "NotFound",
          `No tool call '${body.id}' is waiting in session '${id}': it was answered already, ` +
            "given up (limits.toolCallMs, the call's time limit), or belongs to another session",
        ),
        404,
      );
    }
    if (answered === "too-big") {
      return c.json(
        errorBody(
          "PayloadTooLarge",
          "The result is above the policy's limits.resultBytes; Python got a ToolError saying so",
        ),
        413,
      );
    }
    return c.body(null, 204);
  };
  const summary = "Answer a tool call of a streamed call";
  serve(app, {
    method: "post",
    path: "/tool-results",
    tags: ["tools"],
    summary: `${summary} (default session)`,
    request: { body: request },
    responses,
  }, (c) => answer(c, defaultSession(c)));
  serve(app, {
    method: "post",
    path: "/v1/sessions/{id}/tool-results",
    tags: ["tools"],
    summary,
    request: { params: SessionIdParams, body: request },
    responses,
  }, (c) => answer(c, c.req.param("id")!));
  return app;
}
