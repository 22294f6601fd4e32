/**
 * One definition per route for both the server and its OpenAPI document: `serve` registers the
 * route (its zod schemas, examples and responses) with @hono/zod-openapi's registry and mounts
 * its handler at the same method and path, so the document cannot list a route the app does not
 * serve or leave one out. `GET /openapi.json` is generated from that registry.
 *
 * Request bodies are validated by the handlers with `readJson` and the very schemas documented
 * here, not by the integration's own validator: that one checks only requests whose content type
 * is JSON and answers malformed JSON in its own words, while Moat accepts any content type (as
 * smolagents' client sends it) and names the bad field in every 400.
 */
import { createRoute, OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Handler } from "hono";
import type { z } from "zod";
import { ErrorSchema } from "./schemas.ts";

/** The name of the bearer-token security scheme in the document. */
export const BEARER = "bearer";

/** Sections of the document, in the order the docs page shows them. */
const TAGS = [
  { name: "smolagents", description: "The protocol of smolagents' former WasmExecutor." },
  { name: "sessions", description: "Creating, listing, resetting and deleting sessions." },
  {
    name: "files",
    description: "Files in a session's working directory, which is Python's cwd.",
  },
  {
    name: "mcp",
    description: "MCP over Streamable HTTP, for MCP hosts and clients (guide: docs/mcp.md).",
  },
  { name: "operations", description: "Health, metrics and this API's own description." },
];

/**
 * `/v1/sessions/{id}` (OpenAPI) → `/v1/sessions/:id` (Hono). A `{path}` parameter spans
 * segments (`/files/{path}` → `/files/:path{[\s\S]+}`: a file path inside the working directory).
 */
export function honoPath(path: string): string {
  return path.replace("{path}", ":path{[\\s\\S]+}").replace(/\{(\w+)\}/g, ":$1");
}

/** Serves `handlers` (middleware first) at the route's method and path, and documents it. */
export function serve(app: OpenAPIHono, route: RouteConfig, ...handlers: Handler[]): void {
  app.openAPIRegistry.registerPath(createRoute(route));
  app.on(route.method.toUpperCase(), honoPath(route.path), ...(handlers as [Handler]));
}

/** A JSON request body, documented with the schema its handler validates it with. */
export function jsonBody(schema: z.ZodType, description: string, required = true) {
  return { description, required, content: { "application/json": { schema } } };
}

/** A JSON response. */
export function json(schema: z.ZodType, description: string) {
  return { description, content: { "application/json": { schema } } };
}

const ERRORS = {
  400: [
    "The body is malformed; the message names the field and why.",
    "BadRequest",
    "Field 'code': is required",
  ],
  401: [
    "The `Authorization: Bearer <token>` header is missing or wrong.",
    "Unauthorized",
    "Wrong token",
  ],
  404: [
    "No such session (it never existed, expired, or was deleted).",
    "SessionNotFound",
    "No session 'abc': it never existed, expired, or was deleted",
  ],
  409: [
    "The file name clashes with one the code made (another Unicode normalisation form), or the " +
    "working directory was replaced.",
    "Conflict",
    "'résumé.txt' differs only by Unicode normalisation from an existing name in the working directory (made by the code); rename that one from Python",
  ],
  413: [
    "The body is larger than the policy's `limits.bodyBytes` (a file: `limits.fileBytes`).",
    "PayloadTooLarge",
    "The request body exceeds the policy's limit of 16777216 bytes",
  ],
  429: [
    "The server holds its maximum of sessions, or the session's queue is full.",
    "TooManyRequests",
    "The server holds its maximum of 32 sessions; delete one (DELETE /v1/sessions/{id}) or wait for idle ones to expire",
  ],
  503: [
    "The server is shutting down, or no interpreter could be started.",
    "Unavailable",
    "The server is shutting down",
  ],
} as const;

/** The JSON error responses a route can give, `{"error": {"name", "message"}}`, each with an example. */
export function errors(...statuses: (keyof typeof ERRORS)[]) {
  return Object.fromEntries(statuses.map((status) => {
    const [description, name, message] = ERRORS[status];
    const content = {
      "application/json": { schema: ErrorSchema, example: { error: { name, message } } },
    };
    return [status, { description, content }];
  }));
}

/** The OpenAPI 3.1 document of every route registered in `app` (and the apps it mounts). */
export function openApiDocument(app: OpenAPIHono): unknown {
  app.openAPIRegistry.registerComponent("securitySchemes", BEARER, {
    type: "http",
    scheme: "bearer",
    description: "The server's `MOAT_TOKEN` (for `/metrics`, `MOAT_METRICS_TOKEN` works too).",
  });
  // No `servers`: clients and the docs page use the origin they reached, and the document does
  // not tell a reader where the server listens.
  return app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "Moat",
      version: "1",
      description: "Runs Python written by AI agents in Pyodide, one interpreter per session. " +
        "Every route but the health check, this document and its page needs the bearer token.",
    },
    tags: TAGS,
    security: [{ [BEARER]: [] }],
  });
}
