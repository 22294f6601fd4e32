/**
 * The tool channel (here because workers read only src/worker/): a SharedArrayBuffer per
 * interpreter through which the host answers a host tool call or an outbound HTTP request while
 * the worker's thread is blocked waiting for it (see `worker/tools.ts`). Three 32-bit words, then
 * the answer: [0] the state, [1] the length in bytes of the answer's JSON text (`{"result": …}`,
 * `{"error": "…"}`, or a response's status and headers), checked by the host, [2] the length of
 * the raw bytes that follow it (a response's body; 0 for a tool's answer).
 */

/** The worker posted a call and waits. */
export const TOOL_WAITING = 0;
/** The host wrote an answer. */
export const TOOL_ANSWERED = 1;
/** Bytes before the answer. */
export const TOOL_HEADER_BYTES = 12;
/** Room beyond `limits.resultBytes` for a response's status line and headers as JSON. */
export const HTTP_META_BYTES = 256 * 1024;

/**
 * The longest HTTP request (as JSON text) for a channel of `maxBytes`: a body of `maxBytes` as
 * base64 (4/3 of it), with room for the URL and headers. The worker and the host both hold it.
 */
export function maxRequestChars(maxBytes: number): number {
  return maxBytes * 1.4 + HTTP_META_BYTES;
}

/** One tool of an execute request (PROTOCOL.md §6), as the worker needs it. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

/** One tool of an upstream MCP server: `moat_tools.<server>.<name>`. */
export interface UpstreamToolSpec extends ToolSpec {
  server: string;
}
