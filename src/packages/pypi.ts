import {
  compareVersions,
  isPrerelease,
  parseVersion,
  PYODIDE_MARKERS,
  satisfies,
} from "./requirements.ts";
import { FetchError, fetchOk } from "./source.ts";
import { isPurePython3, parseWheelName } from "./wheel.ts";

/** A wheel listed by a simple index. */
export interface IndexedWheel {
  fileName: string;
  url: string;
  version: string;
  sha256?: string;
}

interface Listed {
  fileName: string;
  url: string;
  sha256?: string;
  yanked: boolean;
  requiresPython?: string;
}

const PYTHON_VERSION = PYODIDE_MARKERS.python_full_version;

/**
 * Finds the newest pure-Python wheel of a project on a PyPI-style simple index (PEP 503 HTML or
 * PEP 691 JSON) that runs on Pyodide's Python and satisfies `specifier`. Undefined when the
 * project or such a wheel does not exist; a FetchError when the index cannot be reached.
 */
export async function findPureWheel(
  index: string,
  project: string,
  specifier: string,
  signal?: AbortSignal,
): Promise<IndexedWheel | undefined> {
  const page = new URL(
    `${encodeURIComponent(project)}/`,
    index.endsWith("/") ? index : `${index}/`,
  );
  let response: Response;
  try {
    response = await fetchOk(page.href, signal, {
      accept: "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
    });
  } catch (err) {
    if (err instanceof FetchError && /HTTP 404$/.test(err.message)) return undefined;
    throw err;
  }
  const type = response.headers.get("content-type") ?? "";
  const text = await response.text();
  const files = type.includes("json") ? fromJson(text, page) : fromHtml(text, page);
  let best: IndexedWheel | undefined;
  let bestIsPre = true;
  for (const file of files) {
    const name = parseWheelName(file.fileName);
    if (!name || file.yanked || !isPurePython3(name)) continue;
    if (file.requiresPython && !satisfies(PYTHON_VERSION, file.requiresPython)) continue;
    if (specifier && !satisfies(name.version, specifier)) continue;
    const version = parseVersion(name.version);
    if (!version) continue;
    const pre = isPrerelease(version);
    const better = !best || (bestIsPre && !pre) ||
      (pre === bestIsPre && compareVersions(version, parseVersion(best.version)!) > 0);
    if (better) {
      best = { fileName: file.fileName, url: file.url, version: name.version, sha256: file.sha256 };
      bestIsPre = pre;
    }
  }
  return best;
}

function fromJson(text: string, page: URL): Listed[] {
  const body = JSON.parse(text) as {
    files?: {
      filename: string;
      url: string;
      hashes?: { sha256?: string };
      yanked?: boolean | string;
      "requires-python"?: string;
    }[];
  };
  return (body.files ?? []).map((f) => ({
    fileName: f.filename,
    url: new URL(f.url, page).href,
    sha256: f.hashes?.sha256,
    yanked: Boolean(f.yanked),
    requiresPython: f["requires-python"],
  }));
}

function fromHtml(text: string, page: URL): Listed[] {
  const out: Listed[] = [];
  for (const m of text.matchAll(/<a\s([^>]*)>([^<]*)<\/a>/gi)) {
    const attrs = m[1];
    const href = /href\s*=\s*"([^"]*)"/i.exec(attrs)?.[1];
    if (!href) continue;
    const url = new URL(unescapeHtml(href), page);
    const sha256 = /^#sha256=([0-9a-f]{64})$/i.exec(url.hash)?.[1];
    url.hash = "";
    const requiresPython = /data-requires-python\s*=\s*"([^"]*)"/i.exec(attrs)?.[1];
    out.push({
      fileName: unescapeHtml(m[2].trim()),
      url: url.href,
      sha256,
      yanked: /data-yanked/i.test(attrs),
      requiresPython: requiresPython ? unescapeHtml(requiresPython) : undefined,
    });
  }
  return out;
}

function unescapeHtml(s: string): string {
  return s.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&quot;", '"')
    .replaceAll("&#39;", "'").replaceAll("&amp;", "&");
}
