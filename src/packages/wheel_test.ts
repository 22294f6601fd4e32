import assert from "node:assert/strict";
import { buildWheel, zip } from "../../test/helpers/wheels.ts";
import { isPurePython3, parseWheelName, readZipEntry, wheelRequirements } from "./wheel.ts";

function wheelName(fileName: string) {
  const name = parseWheelName(fileName);
  assert.ok(name, `${fileName} should parse`);
  return name;
}

/** A one-file zip whose entry is deflated, as real wheels are (the helper stores only). */
async function deflatedZip(path: string, content: string): Promise<Uint8Array> {
  const name = new TextEncoder().encode(path);
  const stream = new Blob([content]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  const data = new Uint8Array(await new Response(stream).arrayBuffer());
  const local = new Uint8Array(30 + name.length);
  const lv = new DataView(local.buffer);
  lv.setUint32(0, 0x04034b50, true);
  lv.setUint16(8, 8, true);
  lv.setUint32(18, data.length, true);
  lv.setUint16(26, name.length, true);
  local.set(name, 30);
  const central = new Uint8Array(46 + name.length);
  const cv = new DataView(central.buffer);
  cv.setUint32(0, 0x02014b50, true);
  cv.setUint16(10, 8, true);
  cv.setUint32(20, data.length, true);
  cv.setUint16(28, name.length, true);
  cv.setUint32(42, 0, true);
  central.set(name, 46);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, 1, true);
  ev.setUint16(10, 1, true);
  ev.setUint32(12, central.length, true);
  ev.setUint32(16, local.length + data.length, true);
  const out = new Uint8Array(local.length + data.length + central.length + end.length);
  let at = 0;
  for (const part of [local, data, central, end]) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

Deno.test("a wheel's file name gives its distribution, version and tags", () => {
  assert.deepEqual(parseWheelName("requests-2.31.0-py3-none-any.whl"), {
    distribution: "requests",
    version: "2.31.0",
    pythonTags: ["py3"],
    abiTags: ["none"],
    platformTags: ["any"],
  });
});

Deno.test("a build tag is allowed and compressed tag sets are split", () => {
  assert.deepEqual(parseWheelName("six-1.16.0-1-py2.py3-none-any.whl"), {
    distribution: "six",
    version: "1.16.0",
    pythonTags: ["py2", "py3"],
    abiTags: ["none"],
    platformTags: ["any"],
  });
});

Deno.test("a file that is not a wheel has no wheel name", () => {
  for (
    const fileName of [
      "requests-2.31.0.tar.gz",
      "requests-2.31.0-py3-none.whl",
      "requests-2.31.0-1-2-py3-none-any.whl",
      "requests.whl",
    ]
  ) {
    assert.equal(parseWheelName(fileName), undefined, fileName);
  }
});

Deno.test("pure Python 3 wheels are accepted", () => {
  for (
    const fileName of [
      "a-1.0-py3-none-any.whl",
      "a-1.0-py2.py3-none-any.whl",
      "a-1.0-py38-none-any.whl",
      "a-1.0-py314-none-any.whl",
    ]
  ) {
    assert.equal(isPurePython3(wheelName(fileName)), true, fileName);
  }
});

Deno.test("compiled, Python 2 only or newer-Python wheels are refused", () => {
  for (
    const fileName of [
      "a-1.0-cp312-cp312-manylinux_2_17_x86_64.whl",
      "a-1.0-cp312-abi3-pyodide_2025_0_wasm32.whl",
      "a-1.0-py3-none-win_amd64.whl",
      "a-1.0-py2-none-any.whl",
      "a-1.0-py315-none-any.whl",
    ]
  ) {
    assert.equal(isPurePython3(wheelName(fileName)), false, fileName);
  }
});

Deno.test("a file is read out of a stored zip, and a missing one is undefined", async () => {
  const archive = zip({ "pkg/__init__.py": "X = 1\n", "pkg/data.txt": "hello" });
  const data = await readZipEntry(archive, (p) => p === "pkg/data.txt");
  assert.equal(new TextDecoder().decode(data), "hello");
  assert.equal(await readZipEntry(archive, (p) => p === "pkg/absent.py"), undefined);
});

Deno.test("a deflated entry is inflated", async () => {
  const text = "Metadata-Version: 2.1\nName: deflated\n".repeat(50);
  const archive = await deflatedZip("deflated-1.0.dist-info/METADATA", text);
  const data = await readZipEntry(archive, (p) => p.endsWith("METADATA"));
  assert.equal(new TextDecoder().decode(data), text);
});

Deno.test("a zip inside a larger buffer is read at its own offset", async () => {
  const archive = zip({ "a.txt": "inner" });
  const buffer = new Uint8Array(archive.length + 16);
  buffer.set(archive, 8);
  const data = await readZipEntry(buffer.subarray(8, 8 + archive.length), (p) => p === "a.txt");
  assert.equal(new TextDecoder().decode(data), "inner");
});

Deno.test("bytes that are not a zip archive are refused", async () => {
  await assert.rejects(
    readZipEntry(new TextEncoder().encode("not a zip, just text".repeat(3)), () => true),
    /not a zip archive/,
  );
});

Deno.test("a wheel's Requires-Dist lines are read from its METADATA", async () => {
  const wheel = buildWheel({
    name: "standin",
    files: { "standin/__init__.py": "" },
    requires: ["requests>=2.0", 'pytest; extra == "test"'],
  });
  assert.deepEqual(await wheelRequirements(wheel.bytes), [
    "requests>=2.0",
    'pytest; extra == "test"',
  ]);
});

Deno.test("Requires-Dist in the description body is not a requirement", async () => {
  const metadata = "Metadata-Version: 2.1\r\nName: doc\r\nrequires-dist: six\r\n\r\n" +
    "Install with:\r\nRequires-Dist: evil\r\n";
  const wheel = zip({ "doc-1.0.dist-info/METADATA": metadata });
  assert.deepEqual(await wheelRequirements(wheel), ["six"]);
});

Deno.test("a wheel without requirements has none, one without METADATA is refused", async () => {
  const plain = buildWheel({ name: "plain", files: { "plain.py": "" } });
  assert.deepEqual(await wheelRequirements(plain.bytes), []);
  const nested = zip({ "x/y.dist-info/METADATA": "Requires-Dist: six\n" });
  await assert.rejects(wheelRequirements(nested), /no \.dist-info\/METADATA/);
});
