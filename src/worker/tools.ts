/**
 * Host tools seen from the worker: Python calls a tool synchronously, so this thread posts a
 * `tool_call` notice and blocks on the call's tool channel (a SharedArrayBuffer the host writes
 * the answer into) until the host answers. While it waits it reads the interrupt buffer, so the
 * call's time limit and the kill switch hold exactly as for running code.
 */
import type { ExecRequest, WorkerNotice } from "../protocol/messages.ts";
import { KILL_SIGNAL } from "./kill_switch.ts";
import { TOOL_HEADER_BYTES, TOOL_WAITING } from "./tool_channel.ts";

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
    state: channel && new Int32Array(channel, 0, 2),
    bytes: channel && new Uint8Array(channel, TOOL_HEADER_BYTES),
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
  if (argsJson.length > call.bytes.length) {
    return answer({
      error: `the arguments of '${name}' (${argsJson.length} characters as JSON) are above ` +
        `limits.resultBytes (${call.bytes.length})`,
    });
  }
  call.left--;
  flushOutput(); // what was printed before the call reaches the client before the call does
  Atomics.store(call.state, 0, TOOL_WAITING);
  post({ notice: "tool_call", name, arguments: argsJson });
  return wait(call);
}

/** Blocks until the host answers, the call's time runs out, or the host gives up waiting. */
function wait(call: Current): string {
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
  const length = Atomics.load(state, 1);
  // The host wrote checked JSON text; copied out of the shared buffer before decoding.
  return decoder.decode(call.bytes!.slice(0, Math.min(length, call.bytes!.length)));
}
