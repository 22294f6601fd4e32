/**
 * The files of the `/docs` page that come from npm (Swagger UI's standalone bundle). Kept apart
 * from `docs.ts` so that the permission flags (src/permissions/flags.ts) can grant read access to
 * exactly these files without importing the HTTP layer.
 */

/** Where `swagger-ui-dist` is installed (`deno install` links it under node_modules). */
const DIR = decodeURIComponent(
  new URL("../../node_modules/swagger-ui-dist/", import.meta.url).pathname,
);

/** Each asset the page loads, by the name it is served under `/docs/`, with its content type. */
export const DOCS_ASSETS = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
} as const;

/** An asset's name under `/docs/`. */
export type DocsAsset = keyof typeof DOCS_ASSETS;

/** Absolute paths of the assets on disk: what the server may read for the page, and no more. */
export const DOCS_ASSET_FILES: string[] = Object.keys(DOCS_ASSETS).map((name) => `${DIR}${name}`);
