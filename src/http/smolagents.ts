import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { z } from "zod";
import type { SessionManager } from "../session/manager.ts";
import { defaultSession } from "./principal.ts";
import { checkTimeout, ExecBodySchema, readJson } from "./body.ts";
import { errors, json, jsonBody, serve } from "./openapi.ts";
import { errorBody } from "../errors.ts";
import { AnswerSchema, ErrorSchema, SessionIdParams, SessionInfoSchema } from "./schemas.ts";
import { answerBody } from "./deliver.ts";
import { streamCall, wantsStream } from "./stream.ts";

const checkResponses = { 200: json(SessionInfoSchema, "The session exists."), ...errors(401, 404) };
const execRequest = jsonBody(ExecBodySchema, "Python code to run (any content type is read).");
const execResponses = {
  200: {
    description: "Every Python-level outcome, success or exception. With " +
      "`Accept: text/event-stream`: `stdout`/`stderr` events (data: the text as a JSON string) " +
      "as the code prints, then one `result` event whose data is this JSON answer.",
    content: {
      ...json(AnswerSchema, "").content,
      "text/event-stream": {
        schema: z.string().meta({
          examples: ['event: stdout\ndata: "hi\\n"\n\nevent: result\ndata: {"result":42,…}\n\n'],
        }),
      },
    },
  },
  ...errors(400, 401, 404, 413, 429, 503),
  400: {
    description: "The body is malformed (the message names the field and why), or its " +
      "`timeoutMs` is above the policy's `limits.maxTimeoutMs` (the message names the limit); " +
      "the code did not run.",
    content: {
      "application/json": {
        schema: ErrorSchema,
        examples: {
          field: { value: errorBody("BadRequest", "Field 'code': is required") },
          timeout: {
            value: errorBody(
              "BadRequest",
              "timeoutMs 600000 is above this server's limit (limits.maxTimeoutMs: 300000)",
            ),
          },
        },
      },
    },
  },
};

/** GET/POST at `/` and `/v1/sessions/{id}`: the protocol smolagents' WasmExecutor spoke. */
export function smolagentsRoutes(sessions: SessionManager): OpenAPIHono {
  const app = new OpenAPIHono();
  const exec = async (c: Context, id: string) => {
    const body = await readJson(c, ExecBodySchema);
    // The session's own policy bounds it (a tenant's may differ from the server's).
    if (body.timeoutMs !== undefined) {
      checkTimeout(body.timeoutMs, (await sessions.limitsOf(id)).maxTimeoutMs);
    }
    if (wantsStream(c)) {
      return await streamCall(c, id, (hooks) => sessions.submit(id, { ...body, ...hooks }));
    }
    const answer = await sessions.exec(id, body);
    return c.body(answerBody(answer.body, id, answer.held), 200, {
      "content-type": "application/json; charset=utf-8",
    });
  };
  const tags = ["smolagents"];
  serve(app, {
    method: "get",
    path: "/",
    tags,
    summary: "Health check of the default session",
    responses: checkResponses,
  }, async (c) => c.json(await sessions.get(defaultSession(c))));
  serve(app, {
    method: "post",
    path: "/",
    tags,
    summary: "Run Python in the default session",
    request: { body: execRequest },
    responses: execResponses,
  }, (c) => exec(c, defaultSession(c)));
  serve(app, {
    method: "get",
    path: "/v1/sessions/{id}",
    tags: ["smolagents", "sessions"],
    summary: "A session's details (also smolagents' health check)",
    request: { params: SessionIdParams },
    responses: checkResponses,
  }, async (c) => c.json(await sessions.get(c.req.param("id")!)));
  serve(app, {
    method: "post",
    path: "/v1/sessions/{id}",
    tags,
    summary: "Run Python in a named session",
    request: { params: SessionIdParams, body: execRequest },
    responses: execResponses,
  }, (c) => exec(c, c.req.param("id")!));
  return app;
}
