/** Reading a streamed call's Server-Sent Events in tests. */
import assert from "node:assert/strict";

/** Whatever sends requests with the token: a TestServer, or a client of a balancer. */
export interface Requester {
  request(path: string, init?: RequestInit): Promise<Response>;
}

export interface Event {
  event: string;
  data: string;
}

/** Starts a streaming call; yields each event as it arrives. */
export async function* stream(
  server: Requester,
  path: string,
  body: unknown,
  signal?: AbortSignal,
): AsyncGenerator<Event> {
  const res = await server.request(path, {
    method: "POST",
    headers: { accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  assert.equal(res.status, 200, await (res.status === 200 ? "" : res.text()));
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  let buffer = "";
  for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    for (let end; (end = buffer.indexOf("\n\n")) >= 0;) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split("\n").filter((l) => !l.startsWith(":"));
      if (lines.length === 0) continue;
      const field = (name: string) =>
        lines.filter((l) => l.startsWith(`${name}: `)).map((l) => l.slice(name.length + 2)).join(
          "\n",
        );
      yield { event: field("event"), data: field("data") };
    }
  }
}

/** Every event of a streaming call, once it ended. */
export async function collect(server: Requester, path: string, body: unknown): Promise<Event[]> {
  const events: Event[] = [];
  for await (const e of stream(server, path, body)) events.push(e);
  return events;
}
