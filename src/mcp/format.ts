/**
 * The text of a `run_python_code` result, exactly as pydantic's mcp-run-python writes it
 * (mcp_run_python/deno/src/runCode.ts: `asXml`, `asJson`, `formatError`), built from a Moat
 * answer. A host that used mcp-run-python reads the same text for the same outcome.
 */

/** `xml` (mcp-run-python's default) or `json` (its `--return-mode json`). */
export type ReturnMode = "xml" | "json";

/** One call's outcome in mcp-run-python's terms. */
export type RunOutcome =
  | {
    status: "success";
    /** What the code printed, one entry per line (stdout, then stderr). */
    output: string[];
    /** The return value as indented JSON (a bare string in XML mode), or null for None. */
    returnValueJson: string | null;
  }
  | { status: "install-error" | "run-error"; output: string[]; error: string };

/** A PNG the code returned (an object with `_repr_png_`), for MCP image content. */
export interface ImageResult {
  data: string;
  mimeType: "image/png";
}

/** The parts of a Moat answer (src/session/answer.ts) that the MCP result is made from. */
export interface AnswerFields {
  result: unknown;
  stdout: string;
  stderr: string;
  error: null | { message: string };
}

// `JSON.rawJSON` and the reviver's `context.source` (V8 ≥ 11.4) are not in Deno's lib types.
type RawJson = (text: string) => unknown;
const rawJSON = (JSON as unknown as { rawJSON: RawJson }).rawJSON;

/**
 * Parses an answer body keeping every number as written (`1.0` stays `1.0`, big integers keep
 * every digit), as pydantic's `to_json` would print them.
 */
export function parseAnswer(body: string): AnswerFields {
  const reviver = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === "number" && context?.source !== undefined ? rawJSON(context.source) : value;
  return JSON.parse(body, reviver as Parameters<typeof JSON.parse>[1]);
}

/** Output text as mcp-run-python collects it: Pyodide's batched stdout hands it one line at a time. */
export function outputLines(stdout: string, stderr: string): string[] {
  const lines = (text: string) => text === "" ? [] : text.replace(/\n$/, "").split("\n");
  return [...lines(stdout), ...lines(stderr)];
}

/**
 * A traceback as mcp-run-python shows it: the code is named `main.py` (Moat names each call's
 * cell `<cell N>`), and it ends with a newline, as Pyodide's `PythonError.message` does.
 */
export function formatTraceback(message: string): string {
  let text = message.replace(/File "<cell \d+>"/g, 'File "main.py"');
  // Pyodide's own frames always open its tracebacks, so even a SyntaxError has the header.
  if (/^ {2}File "/m.test(text) && !text.startsWith("Traceback (most recent call last):")) {
    text = `Traceback (most recent call last):\n${text}`;
  }
  return text.endsWith("\n") ? text : `${text}\n`;
}

function isImage(value: unknown): value is { type: "image"; data: string } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return v.type === "image" && typeof v.data === "string" && Object.keys(v).length === 2;
}

/**
 * The outcome of a call that ran, and the image it returned if any. mcp-run-python's
 * `dump_json`: None is no return value, a string is itself in XML mode, anything else
 * `to_json(value, indent=2)`.
 */
export function outcomeOf(
  answer: AnswerFields,
  mode: ReturnMode,
): { outcome: RunOutcome; image?: ImageResult } {
  const output = outputLines(answer.stdout, answer.stderr);
  if (answer.error) {
    return {
      outcome: { status: "run-error", output, error: formatTraceback(answer.error.message) },
    };
  }
  const value = answer.result;
  if (isImage(value)) {
    return {
      outcome: { status: "success", output, returnValueJson: null },
      image: { data: value.data, mimeType: "image/png" },
    };
  }
  let returnValueJson: string | null;
  if (value === null) returnValueJson = null;
  else if (typeof value === "string" && mode === "xml") returnValueJson = value;
  else returnValueJson = JSON.stringify(value, null, 2);
  return { outcome: { status: "success", output, returnValueJson } };
}

/** mcp-run-python's `escapeClosing`: a closing tag inside the content cannot end its element. */
function escapeClosing(tag: string): (text: string) => string {
  const regex = new RegExp(`</?\\s*${tag}(?:.*?>)?`, "gi");
  return (text) => text.replace(regex, (m) => m.replace(/</g, "&lt;").replace(/>/g, "&gt;"));
}

/** mcp-run-python's XML form (its default). */
export function asXml(outcome: RunOutcome): string {
  const xml = [`<status>${outcome.status}</status>`];
  if (outcome.output.length) {
    xml.push("<output>", ...outcome.output.map(escapeClosing("output")), "</output>");
  }
  if (outcome.status === "success") {
    if (outcome.returnValueJson) {
      xml.push("<return_value>");
      xml.push(escapeClosing("return_value")(outcome.returnValueJson));
      xml.push("</return_value>");
    }
  } else {
    xml.push("<error>", escapeClosing("error")(outcome.error), "</error>");
  }
  return xml.join("\n");
}

/** mcp-run-python's JSON form (`--return-mode json`). */
export function asJson(outcome: RunOutcome): string {
  const json: Record<string, unknown> = { status: outcome.status, output: outcome.output };
  if (outcome.status === "success") {
    json.return_value = outcome.returnValueJson === null
      ? null
      : JSON.parse(outcome.returnValueJson, (_k, v, ctx?: { source?: string }) =>
        typeof v === "number" && ctx?.source !== undefined ? rawJSON(ctx.source) : v);
  } else json.error = outcome.error;
  return JSON.stringify(json);
}

/** The result text in the server's return mode. */
export function render(outcome: RunOutcome, mode: ReturnMode): string {
  return mode === "xml" ? asXml(outcome) : asJson(outcome);
}
