/**
 * `GET /openapi.json` and `GET /docs`: the API's description and an interactive page for it
 * (Swagger UI), both served by Moat itself with no token and no CDN, so they work offline.
 * Neither holds the token, the listen address or any path of the policy: the document has no
 * `servers` (the page uses the origin it was loaded from) and the token is typed into the page.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { DOCS_ASSET_FILES, DOCS_ASSETS, type DocsAsset } from "./docs_assets.ts";
import { errors, serve } from "./openapi.ts";

const tags = ["operations"];

/** The page itself: relative URLs, so it also works behind a proxy that adds a path prefix. */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Moat API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="api"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
`;

/** No validator URL (that would send the document to swagger.io); the token stays in memory. */
const INIT = `window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#api",
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
`;

/**
 * The page may load only what Moat serves: even if the bundle tried to reach the internet, the
 * browser would refuse. Swagger UI sets inline styles; it needs no inline script.
 */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; " +
  "form-action 'none'; frame-ancestors 'none'";

const assets = new Map<string, Promise<Uint8Array<ArrayBuffer>>>();

/** Reads an asset from node_modules once, on first request (the page is rarely opened). */
function asset(name: DocsAsset): Promise<Uint8Array<ArrayBuffer>> {
  let bytes = assets.get(name);
  if (!bytes) {
    const file = DOCS_ASSET_FILES.find((f) => f.endsWith(`/${name}`))!;
    bytes = Deno.readFile(file);
    bytes.catch(() => assets.delete(name));
    assets.set(name, bytes);
  }
  return bytes;
}

const FILES: [string, ...string[]] = ["init.js", ...Object.keys(DOCS_ASSETS)];

/** The routes of the document and its page; `document` builds the document (called once). */
export function docsRoutes(document: () => unknown): OpenAPIHono {
  const app = new OpenAPIHono();
  let text: string | undefined;
  serve(app, {
    method: "get",
    path: "/openapi.json",
    tags,
    summary: "This OpenAPI 3.1 document",
    security: [],
    responses: { 200: { description: "The document of every route the server serves." } },
  }, (c) => {
    text ??= JSON.stringify(document());
    return c.body(text, 200, { "content-type": "application/json; charset=utf-8" });
  });
  serve(app, {
    method: "get",
    path: "/docs",
    tags,
    summary: "An interactive page for this API (works offline)",
    security: [],
    responses: { 200: { description: "HTML", content: { "text/html": { schema: z.string() } } } },
  }, (c) => c.html(PAGE, 200, { "content-security-policy": CSP }));
  serve(app, {
    method: "get",
    path: "/docs/{file}",
    tags,
    summary: "The page's scripts and styles",
    security: [],
    request: { params: z.object({ file: z.enum(FILES) }) },
    responses: { 200: { description: "The file." }, ...errors(404) },
  }, async (c) => {
    const name = c.req.param("file")!;
    if (name === "init.js") {
      return c.body(INIT, 200, { "content-type": "text/javascript; charset=utf-8" });
    }
    if (!(name in DOCS_ASSETS)) return c.notFound();
    const type = DOCS_ASSETS[name as DocsAsset];
    return c.body(await asset(name as DocsAsset), 200, {
      "content-type": type,
      "cache-control": "public, max-age=86400",
    });
  });
  return app;
}
