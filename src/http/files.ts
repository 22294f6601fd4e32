/**
 * The files API: `PUT|GET|DELETE /v1/sessions/{id}/files/{path}`, `GET /v1/sessions/{id}/files`,
 * and the same under `/files` for the default session. Bodies are raw bytes. Each request waits
 * in the session's queue behind the calls already there, so it never sees a call half-done.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { z } from "zod";
import { contentType } from "../files/content_type.ts";
import type { SessionFiles } from "../files/ops.ts";
import { filePath, rawPathname } from "../files/path.ts";
import { MoatError } from "../errors.ts";
import { defaultSession } from "./principal.ts";
import { errors, json, serve } from "./openapi.ts";
import { SessionIdParams } from "./schemas.ts";

/** The 413 of an upload over `limits.fileBytes`. */
class FileTooLarge extends MoatError {
  override name = "PayloadTooLarge";
  constructor(size: number, limit: number) {
    super(413, `The file is ${size} bytes; the policy's limits.fileBytes is ${limit}`);
  }
}

const FileSchema = z.object({
  path: z.string().meta({ description: "Relative to the working directory, `/`-separated." }),
  size: z.number().int().meta({ description: "Bytes." }),
  modified: z.string().meta({ format: "date-time" }),
}).meta({ id: "File" });

const PutSchema = z.object({ file: FileSchema, created: z.boolean() }).meta({ id: "FileWritten" });
const ListSchema = z.object({
  files: z.array(FileSchema),
  totalBytes: z.number().int().meta({
    description: "All files together (what counts for the limit).",
  }),
  limitBytes: z.number().int().meta({ description: "The policy's `limits.filesBytes`." }),
  truncated: z.boolean().meta({ description: "More files exist than the 10 000 listed." }),
}).meta({ id: "FileList" });

const PathParam = z.object({
  path: z.string().meta({
    description: "A relative path in the working directory (segments percent-encoded, NFC); " +
      "`..`, absolute paths, NUL and control characters, and links are refused.",
    examples: ["data.csv"],
  }),
});

/** The files routes, for sessions (`/v1/sessions/{id}/files`) and the default one (`/files`). */
export function fileRoutes(files: SessionFiles): OpenAPIHono {
  const app = new OpenAPIHono();
  const tags = ["files"];
  for (const base of ["/v1/sessions/{id}/files", "/files"]) {
    const named = base.startsWith("/v1/");
    const id = (c: Context) => named ? c.req.param("id")! : defaultSession(c);
    // The path's segments as they came (still percent-encoded): the name is decoded once, here.
    const skip = named ? 5 : 2;
    const path = (c: Context) => filePath(rawPathname(c.req.url).split("/").slice(skip));
    const where = named ? "a session" : "the default session";
    const params = named ? SessionIdParams.extend(PathParam.shape) : PathParam;
    serve(app, {
      method: "get",
      path: base,
      tags,
      summary: `List the files of ${where}`,
      ...(named ? { request: { params: SessionIdParams } } : {}),
      responses: {
        200: json(ListSchema, "Every regular file, sorted by path."),
        ...errors(401, 404, 429),
      },
    }, async (c) => c.json(await files.list(id(c))));
    serve(app, {
      method: "put",
      path: `${base}/{path}`,
      tags,
      summary: `Upload a file into ${where}'s working directory`,
      request: {
        params,
        body: {
          description: "The file's bytes (any content type is read as raw bytes).",
          required: true,
          content: {
            "application/octet-stream": { schema: z.string().meta({ format: "binary" }) },
          },
        },
      },
      responses: {
        200: json(PutSchema, "An existing file was replaced."),
        201: json(PutSchema, "The file was created (and its parent directories)."),
        ...errors(400, 401, 404, 409, 413, 429),
      },
    }, async (c) => {
      const name = path(c);
      const { fileBytes } = await files.limits(id(c));
      const declared = Number(c.req.header("content-length") ?? 0);
      if (declared > fileBytes) throw new FileTooLarge(declared, fileBytes);
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      if (bytes.length > fileBytes) throw new FileTooLarge(bytes.length, fileBytes);
      const written = await files.put(id(c), name, bytes);
      return c.json(written, written.created ? 201 : 200);
    });
    serve(app, {
      method: "get",
      path: `${base}/{path}`,
      tags,
      summary: `Download a file from ${where}'s working directory`,
      request: { params },
      responses: {
        200: {
          description: "The file's bytes, with a content type guessed from its name.",
          content: {
            "application/octet-stream": { schema: z.string().meta({ format: "binary" }) },
          },
        },
        ...errors(400, 401, 404, 409, 413, 429),
      },
    }, async (c) => {
      const name = path(c);
      const { file, bytes } = await files.get(id(c), name);
      const base = name.slice(name.lastIndexOf("/") + 1);
      return c.body(bytes, 200, {
        "content-type": contentType(name),
        "content-disposition": `attachment; filename*=UTF-8''${encodeURIComponent(base)}`,
        "last-modified": new Date(file.modified).toUTCString(),
        // A downloaded file is data, never a page of this origin.
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
      });
    });
    serve(app, {
      method: "delete",
      path: `${base}/{path}`,
      tags,
      summary: `Delete a file from ${where}'s working directory`,
      request: { params },
      responses: {
        200: json(z.object({ deleted: z.string() }), "The file is gone."),
        ...errors(400, 401, 404, 409, 429),
      },
    }, async (c) => {
      const name = path(c);
      return c.json(await files.delete(id(c), name));
    });
  }
  return app;
}
