/**
 * Host tool calls seen from the main thread: the worker posts a `tool_call` notice and blocks;
 * this sends the call to whoever answers it (the streaming client, or an upstream MCP server in
 * code mode), and writes the answer into the interpreter's tool channel, once. Every wait ends:
 * with the answer, at `limits.toolCallMs`, when the client goes away, or when the call ends.
 */
import type { ExecRequest, HttpNotice, ToolCallNotice } from "../protocol/messages.ts";
import type { OutboundAnswer, OutboundRequest } from "../outbound/outbound.ts";
import {
  HTTP_META_BYTES,
  maxRequestChars,
  TOOL_ANSWERED,
  TOOL_HEADER_BYTES,
  type ToolSpec,
  type UpstreamToolSpec,
} from "../worker/tool_channel.ts";

/** What a streamed call's client receives as its `tool_call` event. */
export interface ToolCallEvent {
  id: string;
  name: string;
  arguments: Record<string, unknown>;
}

/** A tool's answer, as the client posts it or an upstream server gives it. */
export type ToolOutcome = { result: unknown } | { error: string };

/** Code mode's upstream servers, as the tool channel needs them (see `src/tools/upstreams.ts`). */
export interface UpstreamCaller {
  readonly version: number;
  /** Every server's name: each is a module, with no functions while it is not reachable. */
  servers(): string[];
  catalog(): UpstreamToolSpec[];
  call(
    server: string,
    name: string,
    args: Record<string, unknown>,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<ToolOutcome>;
}

/** Who answered a tool call (`client` or `upstream`) and how it ended, for the metrics. */
export type ToolCount = (source: "client" | "upstream", outcome: ToolCallOutcome) => void;
export type ToolCallOutcome = "ok" | "error" | "timeout" | "gone" | "too-big" | "refused";

/** One call's tools and who answers them. */
export interface CallTools {
  /** The request's tools (answered by the client over its event stream). */
  tools?: ToolSpec[];
  /** Sends a call of one of `tools` to the streaming client; absent on a call that does not stream. */
  onToolCall?: (call: ToolCallEvent) => void;
  /** Aborted when the client that answers tool calls went away. */
  signal?: AbortSignal;
  upstream?: UpstreamCaller;
  toolCallMs: number;
  toolCalls: number;
  /** Told of every tool call once it ended. */
  count?: ToolCount;
  /** Sends one of Python's HTTP requests (src/outbound/); absent: the policy allows no host. */
  outbound?: (
    request: OutboundRequest,
    timeoutMs: number,
    signal: AbortSignal,
  ) => Promise<OutboundAnswer>;
}

/** How `answer` went: `unknown` (no such call waiting: 404), `too-big` (Python got a ToolError). */
export type Answered = "ok" | "unknown" | "too-big";

/** The tool channel of one interpreter (see `worker/tool_channel.ts`). */
export class ToolChannel {
  readonly #buffer: SharedArrayBuffer;
  readonly #state: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #encoder = new TextEncoder();
  #call?: CallTools;
  #pending?: {
    id: string;
    timer: ReturnType<typeof setTimeout>;
    abort?: AbortController;
    source: "client" | "upstream" | "http";
  };
  /** The upstream catalog version this interpreter's `moat_tools` was last given. */
  #upstreamVersion = -1;

  /**
   * `maxBytes`: the largest answer (the policy's `limits.resultBytes`), and the largest response
   * body, which comes with room for its status and headers.
   */
  constructor(readonly maxBytes: number) {
    this.#buffer = new SharedArrayBuffer(TOOL_HEADER_BYTES + maxBytes + HTTP_META_BYTES);
    this.#state = new Int32Array(this.#buffer, 0, 3);
    this.#bytes = new Uint8Array(this.#buffer, TOOL_HEADER_BYTES);
  }

  /** A call starts: the fields its exec request carries. */
  begin(call: CallTools): Partial<ExecRequest> {
    this.#call = call;
    const fields: Partial<ExecRequest> = {
      tools: call.tools,
      toolChannel: this.#buffer,
      toolCalls: call.toolCalls,
      toolCallMs: call.toolCallMs,
    };
    const upstream = call.upstream;
    if (upstream && upstream.version !== this.#upstreamVersion) {
      fields.upstream = {
        version: upstream.version,
        servers: upstream.servers(),
        tools: upstream.catalog(),
      };
      this.#upstreamVersion = upstream.version;
    }
    call.signal?.addEventListener("abort", () => {
      if (this.#call === call) this.#giveUp("the client went away");
    }, { once: true });
    return fields;
  }

  /** The call ended (or its interpreter died): nothing waits any more. */
  end(): void {
    this.#giveUp("the call ended");
    this.#call = undefined;
  }

  /** Wakes a waiting worker so it reads the interrupt buffer now (the call's time ran out). */
  wake(): void {
    Atomics.notify(this.#state, 0);
  }

  /** The worker called a tool and waits. */
  receive(notice: ToolCallNotice): void {
    const call = this.#call;
    if (!call) return;
    const { name } = notice;
    const clientTool = call.tools?.some((t) => t.name === name) ?? false;
    const dot = name.indexOf(".");
    const upstream = !clientTool && dot > 0 ? call.upstream : undefined;
    const id = this.#hold(call, upstream ? "upstream" : "client");
    let args: unknown;
    try {
      // The worker caps them too; a worker that does not is not trusted with this thread.
      args = notice.arguments.length <= this.maxBytes ? JSON.parse(notice.arguments) : undefined;
    } catch {
      args = undefined;
    }
    if (!args || typeof args !== "object" || Array.isArray(args)) {
      return void this.#write(id, { error: "a tool's arguments must be a JSON object" }, "refused");
    }
    const arguments_ = args as Record<string, unknown>;
    if (clientTool) {
      if (call.signal?.aborted) {
        return void this.#write(id, { error: "the client went away" }, "gone");
      }
      if (!call.onToolCall) {
        return void this.#write(id, { error: `tool '${name}' needs a streamed call` }, "refused");
      }
      return call.onToolCall({ id, name, arguments: arguments_ });
    }
    if (upstream) {
      const abort = new AbortController();
      this.#pending!.abort = abort;
      upstream.call(
        name.slice(0, dot),
        name.slice(dot + 1),
        arguments_,
        call.toolCallMs,
        abort.signal,
      ).then((outcome) => this.#write(id, outcome));
      return;
    }
    this.#write(id, { error: `no tool '${name}' in this call` }, "refused");
  }

  /** Python sent an HTTP request and waits: the host sends it (src/outbound/). */
  receiveHttp(notice: HttpNotice): void {
    const call = this.#call;
    if (!call) return;
    const id = this.#hold(call, "http");
    if (!call.outbound) {
      return void this.#write(id, { error: "network.allow is empty in this policy" }, "refused");
    }
    let request: OutboundRequest;
    try {
      // The worker caps it too; a worker that does not is not trusted with this thread.
      if (notice.request.length > maxRequestChars(this.maxBytes)) throw new Error();
      const parsed = JSON.parse(notice.request);
      request = { ...parsed, body: parsed.body ? Uint8Array.fromBase64(parsed.body) : undefined };
    } catch {
      return void this.#write(id, { error: "the request is not valid" }, "refused");
    }
    const abort = new AbortController();
    this.#pending!.abort = abort;
    call.outbound(request, call.toolCallMs, abort.signal).then((answer) => {
      if ("error" in answer) return this.#write(id, answer);
      const { body, ...meta } = answer;
      this.#write(id, meta, undefined, body);
    });
  }

  /** The client's answer to call `id`. */
  answer(id: string, outcome: ToolOutcome): Answered {
    return this.#write(id, outcome);
  }

  /**
   * A new wait: its id, and its timer at `limits.toolCallMs`. A wait still pending here was left
   * by the worker (interrupted): it is dropped unanswered, since an answer written now would be
   * read as the new one's.
   */
  #hold(call: CallTools, source: "client" | "upstream" | "http"): string {
    const left = this.#pending;
    if (left) {
      clearTimeout(left.timer);
      left.abort?.abort();
      this.#pending = undefined;
    }
    const id = crypto.randomUUID();
    const timer = setTimeout(() => {
      const error = `no result within limits.toolCallMs (${call.toolCallMs} ms)`;
      this.#write(id, { error }, "timeout");
    }, call.toolCallMs + (source === "http" ? 1_000 : 0)); // a request ends itself at toolCallMs
    this.#pending = { id, timer, source };
    return id;
  }

  /** Ends the wait of the call pending, if any, with an error. */
  #giveUp(why: string): void {
    if (this.#pending) this.#write(this.#pending.id, { error: why }, "gone");
  }

  /**
   * Writes the answer to the pending call `id` and wakes the worker; once per call. An answer
   * above `maxBytes` becomes a ToolError that says so.
   */
  #write(
    id: string,
    outcome: ToolOutcome | Record<string, unknown>,
    how?: ToolCallOutcome,
    body?: Uint8Array,
  ): Answered {
    const pending = this.#pending;
    if (!pending || pending.id !== id) return "unknown";
    this.#pending = undefined;
    clearTimeout(pending.timer);
    pending.abort?.abort();
    // A tool's answer fits in maxBytes; a response's status and headers in the room after it.
    const room = this.#bytes.subarray(0, body ? HTTP_META_BYTES : this.maxBytes);
    let text = JSON.stringify(
      "error" in outcome
        ? {
          error: String(outcome.error),
          ...(body === undefined && "kind" in outcome ? { kind: outcome.kind } : {}),
        }
        : outcome,
    );
    let { read, written } = this.#encoder.encodeInto(text, room);
    let answered: Answered = "ok";
    if (read < text.length) {
      answered = "too-big";
      body = undefined;
      const size = this.#encoder.encode(text).length;
      text = JSON.stringify({
        error: pending.source === "http"
          ? `the response's headers (${size} bytes as JSON) are above ${HTTP_META_BYTES} bytes`
          : `the tool's answer of ${size} bytes is above limits.resultBytes (${this.maxBytes})`,
      });
      ({ written } = this.#encoder.encodeInto(text, room));
    }
    if (body) this.#bytes.set(body, written);
    Atomics.store(this.#state, 1, written);
    Atomics.store(this.#state, 2, body?.length ?? 0);
    Atomics.store(this.#state, 0, TOOL_ANSWERED);
    Atomics.notify(this.#state, 0);
    if (pending.source === "http") return answered;
    const ended = answered === "too-big" ? "too-big" : how ?? ("error" in outcome ? "error" : "ok");
    this.#call?.count?.(pending.source, ended);
    return answered;
  }
}
