/**
 * Host tools and outbound HTTP seen from the worker: Python calls a tool (or sends an HTTP
 * request) synchronously, so this thread posts a `tool_call` (or `http`) notice and blocks on the
 * call's tool channel (a SharedArrayBuffer the host writes the answer into) until the host
 * answers. While it waits it reads the interrupt buffer, so the
 * call's time limit and the kill switch hold exactly as for running code.
 */
import type { ExecRequest, WorkerNotice } from "../protocol/messages.ts";
import { KILL_SIGNAL } from "./kill_switch.ts";
import {
  HTTP_META_BYTES,
  maxRequestChars,
  TOOL_HEADER_BYTES,
  TOOL_WAITING,
} from "./tool_channel.ts";

/** How often a wait looks at the interrupt buffer when nothing woke it. */
const SLICE_MS = 50;
/** Kept from the start: nothing Python reaches can take it away. */
const exit = globalThis.Deno?.exit;

/** The running call's tools, set by `beginTools` and cleared when the call ends. */
interface Current {
  names: Set<string>;
  upstream: Set<string>;
  stream: boolean;
  left: number;
  limit: number;
  waitMs: number;
  state?: Int32Array;
  bytes?: Uint8Array;
  /** The policy's `limits.resultBytes`: the channel holds that, and room for HTTP headers. */
  maxBytes: number;
}

let current: Current | undefined;
let post: (notice: WorkerNotice) => void = () => {};
let flushOutput: () => void = () => {};
let interrupt: Int32Array | undefined;
/** The upstream tools (`server.tool`) the interpreter was last told of. */
const upstream = { names: new Set<string>() };
const decoder = new TextDecoder();

const answer = (fields: Record<string, unknown>) => JSON.stringify(fields);

/** Where notices go, and the interrupt buffer a wait watches; set once at boot. */
export function connectTools(
  poster: (notice: WorkerNotice) => void,
  interruptBuffer: Int32Array,
): void {
  post = poster;
  interrupt = interruptBuffer;
}

/** A call starts: its tools (and the upstream ones) are callable until `endTools`. */
export function beginTools(request: ExecRequest, flush: () => void): void {
  if (request.upstream) {
    upstream.names = new Set(request.upstream.tools.map((t) => `${t.server}.${t.name}`));
  }
  flushOutput = flush;
  const channel = request.toolChannel;
  current = {
    names: new Set((request.tools ?? []).map((t) => t.name)),
    upstream: upstream.names,
    stream: !!request.stream,
    left: request.toolCalls ?? 0,
    limit: request.toolCalls ?? 0,
    waitMs: request.toolCallMs ?? 0,
    state: channel && new Int32Array(channel, 0, 3),
    bytes: channel && new Uint8Array(channel, TOOL_HEADER_BYTES),
    maxBytes: channel ? channel.byteLength - TOOL_HEADER_BYTES - HTTP_META_BYTES : 0,
  };
}

/** The call ended: its tools answer no more. */
export function endTools(): void {
  current = undefined;
  flushOutput = () => {};
}

/**
 * Python's `moat_tools` calls this (through the lockdown's closure) with a tool's name and its
 * arguments as JSON text; answers JSON text: `{"result": …}`, `{"error": "…"}`, or
 * `{"interrupted": true}` when the call's time ran out while it waited.
 */
export function callTool(name: string, argsJson: string): string {
  const call = current;
  if (!call) return answer({ error: `tool '${name}' exists only during the call that gave it` });
  const isUpstream = call.upstream.has(name);
  if (!call.names.has(name) && !isUpstream) {
    return answer({
      error: `no tool '${name}' in this call (a call's tools exist only during that call)`,
    });
  }
  if (!isUpstream && !call.stream) {
    return answer({
      error: `tool '${name}' needs a streamed call: send the request with ` +
        "'Accept: text/event-stream' and answer its tool_call events",
    });
  }
  if (!call.state || !call.bytes) return answer({ error: "this call has no tool channel" });
  if (call.left <= 0) {
    return answer({ error: `limits.toolCalls reached: ${call.limit} tool calls per request` });
  }
  // The arguments are capped like the answer: the channel's size, the policy's resultBytes.
  if (argsJson.length > call.maxBytes) {
    return answer({
      error: `the arguments of '${name}' (${argsJson.length} characters as JSON) are above ` +
        `limits.resultBytes (${call.maxBytes})`,
    });
  }
  call.left--;
  flushOutput(); // what was printed before the call reaches the client before the call does
  Atomics.store(call.state, 0, TOOL_WAITING);
  post({ notice: "tool_call", name, arguments: argsJson });
  return wait(call);
}

/**
 * Python's HTTP clients (`python/lockdown.py`'s `_http`) call this with a request as JSON text
 * (`{url, method, headers, body (base64), timeout}`); the host sends it. Answers JSON text: the
 * response (`{status, reason, url, headers, body (base64)}`), `{"error": "…"}`, or
 * `{"interrupted": true}`.
 */
export function sendHttp(requestJson: string): string {
  const call = current;
  if (!call) return answer({ error: "HTTP requests can be sent only while a call runs" });
  if (!call.state || !call.bytes) return answer({ error: "this call has no tool channel" });
  // A body as base64 is 4/3 of its bytes; the host refuses one above limits.resultBytes.
  if (requestJson.length > maxRequestChars(call.maxBytes)) {
    return answer({
      error: `the request (${requestJson.length} characters as JSON) is above limits.resultBytes`,
    });
  }
  flushOutput();
  Atomics.store(call.state, 0, TOOL_WAITING);
  post({ notice: "http", request: requestJson });
  return wait(call, true);
}

/**
 * Blocks until the host answers, the call's time runs out, or the host gives up waiting. A
 * response's body follows its JSON text in the channel: `withBody` puts it in as base64.
 */
function wait(call: Current, withBody = false): string {
  const state = call.state!;
  // The host ends the wait itself at toolCallMs; this is only a backstop if it never does.
  const deadline = performance.now() + call.waitMs + 5_000;
  while (Atomics.load(state, 0) === TOOL_WAITING) {
    Atomics.wait(state, 0, TOOL_WAITING, SLICE_MS);
    const signal = interrupt ? Atomics.load(interrupt, 0) : 0;
    if (signal === KILL_SIGNAL) exit(1);
    if (signal !== 0 && Atomics.compareExchange(interrupt!, 0, signal, 0) === signal) {
      return answer({ interrupted: true });
    }
    if (performance.now() > deadline && Atomics.load(state, 0) === TOOL_WAITING) {
      return answer({ error: `no result within limits.toolCallMs (${call.waitMs} ms)` });
    }
  }
  const bytes = call.bytes!;
  const length = Math.min(Atomics.load(state, 1), bytes.length);
  // The host wrote checked JSON text; copied out of the shared buffer before decoding.
  const text = decoder.decode(bytes.slice(0, length));
  const bodyLength = Math.min(Atomics.load(state, 2), bytes.length - length);
  if (!withBody || !text.startsWith('{"status"')) return text;
  const body = bytes.slice(length, length + bodyLength).toBase64();
  return `${text.slice(0, -1)},"body":"${body}"}`;
}
