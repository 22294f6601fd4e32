/**
 * Small pure-Python wheels made by the tests themselves (a wheel is a zip holding the package
 * and a `.dist-info`), package indexes made of them, and a loopback HTTP server that serves one.
 * No test downloads anything: where a test needs a name only the network could provide (numpy,
 * pillow), it builds a stand-in wheel of that name here.
 */
import { sha256Hex } from "../../src/digest.ts";
import { PYODIDE_DIR, ROOT } from "../../src/paths.ts";

/** A wheel to build: its distribution name, version, files, and `Requires-Dist` lines. */
export interface WheelSpec {
  name: string;
  version?: string;
  /** Path in the wheel → content, e.g. `{"standin/__init__.py": "X = 1"}`. */
  files: Record<string, string | Uint8Array>;
  /** `Requires-Dist` lines (PyPI wheels) and the lock file's `depends` (Pyodide wheels). */
  requires?: string[];
  /** Import names for the lock file; the top-level directories of `files` when absent. */
  imports?: string[];
  /** Wheel tag; pure Python unless a test says otherwise. */
  tag?: string;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive of stored (uncompressed) files. */
export function zip(files: Record<string, string | Uint8Array>): Uint8Array {
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const nameBytes = enc.encode(name);
    const data = typeof content === "string" ? enc.encode(content) : content;
    const crc = crc32(data);
    const local = new Uint8Array(30 + nameBytes.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, nameBytes.length, true);
    local.set(nameBytes, 30);
    const cen = new Uint8Array(46 + nameBytes.length);
    const cv = new DataView(cen.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    cen.set(nameBytes, 46);
    chunks.push(local, data);
    central.push(cen);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const c of [...chunks, ...central, end]) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

/** Builds a wheel; returns its file name and bytes. */
export function buildWheel(spec: WheelSpec): { fileName: string; bytes: Uint8Array } {
  const version = spec.version ?? "1.0";
  const tag = spec.tag ?? "py3-none-any";
  const norm = spec.name.replace(/[-_.]+/g, "_");
  const info = `${norm}-${version}.dist-info`;
  const metadata = [
    "Metadata-Version: 2.1",
    `Name: ${spec.name}`,
    `Version: ${version}`,
    ...(spec.requires ?? []).map((r) => `Requires-Dist: ${r}`),
    "",
  ].join("\n");
  const files: Record<string, string | Uint8Array> = {
    ...spec.files,
    [`${info}/METADATA`]: metadata,
    [`${info}/WHEEL`]:
      `Wheel-Version: 1.0\nGenerator: moat-tests\nRoot-Is-Purelib: true\nTag: ${tag}\n`,
  };
  files[`${info}/RECORD`] = Object.keys(files).map((f) => `${f},,`).join("\n") +
    `\n${info}/RECORD,,\n`;
  return { fileName: `${norm}-${version}-${tag}.whl`, bytes: zip(files) };
}

/** The `info` block of Pyodide's own lock file, so a test index matches this Pyodide. */
async function pyodideLockInfo(): Promise<Record<string, string>> {
  return JSON.parse(await Deno.readTextFile(`${PYODIDE_DIR}pyodide-lock.json`)).info;
}

/**
 * Writes a Pyodide-style index into `dir`: the wheels and a `pyodide-lock.json` listing them
 * (with `depends` taken from `requires`), as scripts/mirror_packages.ts would.
 */
export async function writeLockIndex(dir: string, specs: WheelSpec[]): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const packages: Record<string, unknown> = {};
  for (const spec of specs) {
    const wheel = buildWheel(spec);
    await Deno.writeFile(`${dir}/${wheel.fileName}`, wheel.bytes);
    const key = spec.name.replace(/[-_.]+/g, "-").toLowerCase();
    packages[key] = {
      name: spec.name,
      version: spec.version ?? "1.0",
      file_name: wheel.fileName,
      install_dir: "site",
      sha256: await sha256Hex(wheel.bytes),
      package_type: "package",
      imports: spec.imports ?? topLevelNames(spec.files),
      depends: spec.requires ?? [],
    };
  }
  const lock = { info: await pyodideLockInfo(), packages };
  await Deno.writeTextFile(`${dir}/pyodide-lock.json`, JSON.stringify(lock, null, 2));
}

/**
 * Writes a PyPI-style simple index (PEP 503 HTML) into `dir`: `dir/<project>/index.html` linking
 * to wheels in `dir/files/`, with their sha256.
 */
export async function writeSimpleIndex(dir: string, specs: WheelSpec[]): Promise<void> {
  await Deno.mkdir(`${dir}/files`, { recursive: true });
  const links = new Map<string, string[]>();
  for (const spec of specs) {
    const wheel = buildWheel(spec);
    await Deno.writeFile(`${dir}/files/${wheel.fileName}`, wheel.bytes);
    const project = spec.name.replace(/[-_.]+/g, "-").toLowerCase();
    const sha = await sha256Hex(wheel.bytes);
    links.set(project, [
      ...(links.get(project) ?? []),
      `<a href="../files/${wheel.fileName}#sha256=${sha}">${wheel.fileName}</a>`,
    ]);
  }
  for (const [project, anchors] of links) {
    await Deno.mkdir(`${dir}/${project}`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/${project}/index.html`,
      `<!DOCTYPE html><html><body>\n${anchors.join("<br>\n")}\n</body></html>\n`,
    );
  }
}

function topLevelNames(files: Record<string, unknown>): string[] {
  return [...new Set(Object.keys(files).map((p) => p.split("/")[0].replace(/\.py$/, "")))];
}

/** A loopback HTTP server for a directory; it records the paths it was asked for. */
export class DirectoryServer implements AsyncDisposable {
  readonly requests: string[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor(readonly dir: string) {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => this.#serve(req),
    );
  }

  /** Base URL, ending in `/`. */
  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/`;
  }

  async #serve(req: Request): Promise<Response> {
    const path = decodeURIComponent(new URL(req.url).pathname);
    this.requests.push(path);
    if (path.includes("..")) return new Response("no", { status: 400 });
    const file = path.endsWith("/") ? `${path}index.html` : path;
    try {
      const body = await Deno.readFile(`${this.dir}${file}`);
      const type = file.endsWith(".html") ? "text/html" : "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }
}

/** A real compiled (wasm32) CPython extension module, from test/fixtures/fastmod.c. */
export async function fastmodSpec(): Promise<WheelSpec> {
  const so = "fastmod.cpython-314-wasm32-emscripten.so";
  return {
    name: "fastmod",
    files: { [so]: await Deno.readFile(`${ROOT}test/fixtures/${so}`) },
    imports: ["fastmod"],
    tag: "cp314-cp314-pyemscripten_2026_0_wasm32",
  };
}
