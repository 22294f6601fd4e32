/** What a wheel's file name says (PEP 427). */
export interface WheelName {
  distribution: string;
  version: string;
  pythonTags: string[];
  abiTags: string[];
  platformTags: string[];
}

/** Parses `name-version(-build)?-python-abi-platform.whl`; undefined when it is not one. */
export function parseWheelName(fileName: string): WheelName | undefined {
  if (!fileName.endsWith(".whl")) return undefined;
  const parts = fileName.slice(0, -4).split("-");
  if (parts.length !== 5 && parts.length !== 6) return undefined;
  const [python, abi, platform] = parts.slice(-3);
  return {
    distribution: parts[0],
    version: parts[1],
    pythonTags: python.split("."),
    abiTags: abi.split("."),
    platformTags: platform.split("."),
  };
}

/** Whether a wheel runs on any Python 3 without compiled code, so Pyodide can import it. */
export function isPurePython3(name: WheelName): boolean {
  return name.abiTags.includes("none") && name.platformTags.includes("any") &&
    name.pythonTags.some((t) => t === "py3" || /^py3\d*$/.test(t) && Number(t.slice(3)) <= 14);
}

/**
 * Reads one file out of a zip archive (a wheel), or undefined when it is not there. Only what
 * wheels use: stored or deflated entries, no zip64.
 */
export async function readZipEntry(
  zip: Uint8Array,
  matches: (path: string) => boolean,
): Promise<Uint8Array | undefined> {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let end = zip.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) throw new Error("not a zip archive");
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  const decoder = new TextDecoder();
  for (let i = 0; i < count; i++) {
    if (view.getUint32(at, true) !== 0x02014b50) throw new Error("damaged zip directory");
    const method = view.getUint16(at + 10, true);
    const size = view.getUint32(at + 20, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const name = decoder.decode(zip.subarray(at + 46, at + 46 + nameLength));
    at += 46 + nameLength + extraLength + commentLength;
    if (!matches(name)) continue;
    const dataAt = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const data = zip.subarray(dataAt, dataAt + size);
    if (method === 0) return data;
    if (method !== 8) throw new Error(`unsupported zip compression ${method} for ${name}`);
    const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("deflate-raw"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return undefined;
}

/** The `Requires-Dist` lines of a wheel's METADATA. */
export async function wheelRequirements(wheel: Uint8Array): Promise<string[]> {
  const metadata = await readZipEntry(wheel, (p) => /^[^/]+\.dist-info\/METADATA$/.test(p));
  if (!metadata) throw new Error("the wheel has no .dist-info/METADATA");
  const headers = new TextDecoder().decode(metadata).split(/\r?\n\r?\n/)[0];
  return headers.split(/\r?\n/)
    .filter((line) => /^Requires-Dist:/i.test(line))
    .map((line) => line.slice("Requires-Dist:".length).trim());
}
