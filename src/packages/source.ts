import { version as PYODIDE_VERSION } from "pyodide";

/** Pyodide's CDN for the pinned version: the default place of its wheels. */
export const PYODIDE_CDN = `https://cdn.jsdelivr.net/pyodide/v${PYODIDE_VERSION}/full/`;

/** How long one download may take before it counts as failed. */
const FETCH_TIMEOUT_MS = 60_000;

/** A file could not be read from an index; the message says which and why. */
export class FetchError extends Error {
  override name = "FetchError";
}

/** A local directory or an http(s) base URL that wheel files are read from. */
export class IndexLocation {
  private constructor(readonly kind: "dir" | "url", readonly base: string) {}

  /** Accepts `http(s)://…` (a trailing `/` is added), `file://…`, or a directory path. */
  static parse(spec: string, baseDir: string = Deno.cwd()): IndexLocation {
    if (/^https?:\/\//i.test(spec)) {
      return new IndexLocation("url", spec.endsWith("/") ? spec : `${spec}/`);
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec) && !spec.startsWith("file://")) {
      throw new TypeError(`unsupported index '${spec}': use an http(s) URL or a directory`);
    }
    let path = spec.startsWith("file://") ? new URL(spec).pathname : spec;
    if (!path.startsWith("/")) path = `${baseDir.replace(/\/$/, "")}/${path}`;
    return new IndexLocation("dir", path.replace(/\/+$/, "") + "/");
  }

  toString(): string {
    return this.kind === "dir" ? this.base.replace(/\/$/, "") : this.base;
  }

  /** The URL or path of a file of this index; a URL from the index itself is kept as is. */
  resolve(file: string): string {
    if (this.kind === "url") return new URL(file, this.base).href;
    if (!/^[\w.+-]+$/.test(file) || file.startsWith(".")) {
      throw new FetchError(`refusing the file name '${file}' in the mirror at ${this}`);
    }
    return this.base + file;
  }

  /** Reads one file (a wheel or the lock file) from this index. */
  async read(file: string, signal?: AbortSignal): Promise<Uint8Array> {
    const where = this.resolve(file);
    if (this.kind === "dir") {
      try {
        return await Deno.readFile(where, { signal });
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) {
          throw new FetchError(`${file} is not in the mirror directory ${this}`);
        }
        throw new FetchError(`cannot read ${where}: ${(err as Error).message}`);
      }
    }
    return await fetchBytes(where, signal);
  }
}

/** GETs a URL with a time limit; a failure becomes a FetchError naming the URL. */
export async function fetchBytes(
  url: string,
  signal?: AbortSignal,
  headers?: HeadersInit,
): Promise<Uint8Array> {
  return new Uint8Array(await (await fetchOk(url, signal, headers)).arrayBuffer());
}

/** GETs a URL and returns the response when its status is 2xx. */
export async function fetchOk(
  url: string,
  signal?: AbortSignal,
  headers?: HeadersInit,
): Promise<Response> {
  const timeout = AbortSignal.timeout(FETCH_TIMEOUT_MS);
  let response: Response;
  try {
    response = await fetch(url, {
      headers,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  } catch (err) {
    const why = err instanceof Deno.errors.NotCapable
      ? "the server was not started with network access to that host"
      : (err as Error).name === "TimeoutError"
      ? "no answer in time"
      : [(err as Error).message, ((err as Error).cause as Error | undefined)?.message]
        .filter(Boolean).join(": ")
        // Deno repeats the URL inside the cause; once is enough.
        .replace(/error sending request for url \([^)]*\): /, "");
    throw new FetchError(`cannot download ${url}: ${why}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new FetchError(`cannot download ${url}: HTTP ${response.status}`);
  }
  return response;
}
