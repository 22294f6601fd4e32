/**
 * The tool channel (here because workers read only src/worker/): a SharedArrayBuffer per interpreter through which the host answers a host
 * tool call while the worker's thread is blocked waiting for it (see `worker/tools.ts`). Two
 * 32-bit words, then the answer: [0] the state, [1] the answer's length in bytes, then that
 * many bytes of JSON text (`{"result": …}` or `{"error": "…"}`), checked by the host.
 */

/** The worker posted a call and waits. */
export const TOOL_WAITING = 0;
/** The host wrote an answer. */
export const TOOL_ANSWERED = 1;
/** Bytes before the answer. */
export const TOOL_HEADER_BYTES = 8;

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
