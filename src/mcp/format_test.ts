import assert from "node:assert/strict";
import { asJson, asXml, formatTraceback, outcomeOf, outputLines, parseAnswer } from "./format.ts";

/** A Moat answer body as src/session/answer.ts writes it. */
function body(result: string, fields: { stdout?: string; stderr?: string; error?: unknown } = {}) {
  return `{"result":${result},` + JSON.stringify({
    stdout: fields.stdout ?? "",
    stderr: fields.stderr ?? "",
    error: fields.error ?? null,
  }).slice(1);
}

const xml = (text: string, mode: "xml" | "json" = "xml") =>
  (mode === "xml" ? asXml : asJson)(outcomeOf(parseAnswer(text), mode).outcome);

// The expected texts are mcp-run-python's own test snapshots (tests/test_mcp_servers.py).
Deno.test("printed output and a return value read exactly as in mcp-run-python", () => {
  assert.equal(
    xml(body("4", { stdout: "x=4\n" })),
    "<status>success</status>\n<output>\nx=4\n</output>\n<return_value>\n4\n</return_value>",
  );
});

Deno.test("a list comes back as indented JSON, as pydantic's to_json writes it", () => {
  assert.equal(
    xml(body("[1, 2, 3]")),
    "<status>success</status>\n<return_value>\n[\n  1,\n  2,\n  3\n]\n</return_value>",
  );
});

Deno.test("an undefined name is a run-error whose traceback names main.py", () => {
  const message = 'Traceback (most recent call last):\n  File "<cell 3>", line 1, in <module>\n' +
    "    print(unknown)\n          ^^^^^^^\nNameError: name 'unknown' is not defined";
  assert.equal(
    xml(body("null", { error: { message } })),
    `<status>run-error</status>
<error>
Traceback (most recent call last):
  File "main.py", line 1, in <module>
    print(unknown)
          ^^^^^^^
NameError: name 'unknown' is not defined

</error>`,
  );
});

Deno.test("a syntax error keeps the traceback header Pyodide's frames give it", () => {
  const message = '  File "<cell 1>", line 1\n    def (\n        ^\nSyntaxError: invalid syntax';
  assert.equal(
    formatTraceback(message),
    'Traceback (most recent call last):\n  File "main.py", line 1\n    def (\n        ^\n' +
      "SyntaxError: invalid syntax\n",
  );
});

Deno.test("a Moat limit message without frames is passed on as it is", () => {
  assert.equal(formatTraceback("MemoryError: out of memory."), "MemoryError: out of memory.\n");
});

Deno.test("a string is returned bare in XML mode and None returns nothing", () => {
  assert.equal(xml(body('"hi"')), "<status>success</status>\n<return_value>\nhi\n</return_value>");
  assert.equal(xml(body("null")), "<status>success</status>");
});

Deno.test("numbers keep the form Python printed: floats stay floats, big integers every digit", () => {
  assert.equal(
    xml(body("[1.0, 123456789012345678901234567890]")),
    "<status>success</status>\n<return_value>\n[\n  1.0,\n  123456789012345678901234567890\n]\n" +
      "</return_value>",
  );
});

Deno.test("JSON mode writes mcp-run-python's JSON object", () => {
  assert.equal(
    xml(body('"hi"', { stdout: "a\n\nb" }), "json"),
    '{"status":"success","output":["a","","b"],"return_value":"hi"}',
  );
  assert.equal(xml(body("null"), "json"), '{"status":"success","output":[],"return_value":null}');
  assert.equal(
    xml(body('{"a": 1.5}'), "json"),
    '{"status":"success","output":[],"return_value":{"a":1.5}}',
  );
  assert.equal(
    xml(body("null", { error: { message: "ValueError: no" } }), "json"),
    '{"status":"run-error","output":[],"error":"ValueError: no\\n"}',
  );
});

Deno.test("a closing tag in the output or the value cannot end its element", () => {
  assert.equal(
    xml(body('"</return_value>x"', { stdout: "</output>\n" })),
    "<status>success</status>\n<output>\n&lt;/output&gt;\n</output>\n<return_value>\n" +
      "&lt;/return_value&gt;x\n</return_value>",
  );
});

Deno.test("output is one entry per printed line, stdout before stderr", () => {
  assert.deepEqual(outputLines("a\nb\n", "warn\n"), ["a", "b", "warn"]);
  assert.deepEqual(outputLines("no newline", ""), ["no newline"]);
  assert.deepEqual(outputLines("", ""), []);
});

Deno.test("an image result becomes image content and no return value", () => {
  const { outcome, image } = outcomeOf(
    parseAnswer(body('{"type": "image", "data": "iVBORw0K"}')),
    "xml",
  );
  assert.deepEqual(image, { data: "iVBORw0K", mimeType: "image/png" });
  assert.equal(asXml(outcome), "<status>success</status>");
});
