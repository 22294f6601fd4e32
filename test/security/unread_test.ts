/**
 * Attack: clients that ask for big answers and never read them, to make the server hold them.
 * An answer nobody takes any byte of for `UNREAD_MS` is dropped: the connection is cut, an
 * `answer-dropped` line is logged, and the session goes on serving.
 */
import assert from "node:assert/strict";
import { UNREAD_MS } from "../../src/http/deliver.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

/** 24 MiB of output: more than loopback socket buffers take, so the server must hold the rest. */
const CODE = "print('x' * (24 << 20))";

/** Sends an execute request on a raw socket and reads nothing back. */
async function unreadCall(server: TestServer, id: string, stream: boolean): Promise<Deno.Conn> {
  const url = new URL(server.url);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const body = JSON.stringify({ code: CODE });
  const head = `POST /v1/sessions/${id} HTTP/1.1\r\nHost: moat\r\n` +
    `Authorization: Bearer ${server.token}\r\nContent-Type: application/json\r\n` +
    (stream ? "Accept: text/event-stream\r\n" : "") +
    `Content-Length: ${body.length}\r\n\r\n`;
  await conn.write(new TextEncoder().encode(head + body));
  return conn;
}

/** Everything the socket still gives, until the server has closed it. */
async function drain(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(1 << 20);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } catch {
    // reset by the server: also an end
  }
  conn.close();
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) (bytes.set(c, at), at += c.length);
  return new TextDecoder().decode(bytes);
}

Deno.test("an answer its client never reads is dropped, and the session serves on", async () => {
  await using server = await startServer({
    policyText: "limits:\n  stdoutBytes: 33554432\n  sessions: 4\n",
  });
  const plain = await server.createSession();
  const streamed = await server.createSession();
  const conns = [await unreadCall(server, plain, false), await unreadCall(server, streamed, true)];

  const deadline = Date.now() + UNREAD_MS + 60_000;
  const dropped = () => server.stdout.split("\n").filter((l) => l.includes('"answer-dropped"'));
  while (dropped().length < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
  }
  const lines = dropped().map((l) => JSON.parse(l));
  assert.equal(lines.length, 2, `answer-dropped lines: ${JSON.stringify(lines)}`);
  assert.deepEqual(lines.map((l) => l.session).sort(), [plain, streamed].sort());
  for (const line of lines) {
    assert.ok(line.sent < line.bytes, `sent ${line.sent} of ${line.bytes}`);
    assert.match(line.reason, /read nothing for 30 s/);
  }

  // The connections were cut short: neither answer reached its end.
  const [plainText, streamText] = await Promise.all(conns.map(drain));
  assert.match(plainText, /^HTTP\/1\.1 200/);
  assert.ok(!plainText.endsWith("\r\n0\r\n\r\n"), "the plain answer was ended normally");
  assert.ok(!streamText.includes("event: result"), "the streamed answer reached its result");

  // Both sessions still serve, with their state.
  for (const id of [plain, streamed]) {
    const body = await server.exec("1 + 1", { session: id });
    assert.equal(body.result, 2, JSON.stringify(body));
  }
  const health = await fetch(`${server.url}/health`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
});
