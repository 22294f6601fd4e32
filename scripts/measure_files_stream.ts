/**
 * Measures two things users notice: what streaming costs a call that prints 10 000 lines
 * (`Accept: text/event-stream` against a plain call, alternated, read to the end by the
 * client), and the time to upload and download a 10 MB file (wall clock at the client, the
 * whole HTTP round trip). Everything stays on loopback.
 *
 *   npx --yes deno@2.9.6 run --allow-read --allow-write --allow-run \
 *     --allow-net=127.0.0.1,localhost --allow-env scripts/measure_files_stream.ts
 */
import { startServer } from "../test/helpers/server.ts";

const ROUNDS = Number(Deno.args[0] ?? 15);
const CODE = "for i in range(10000):\n    print(f'line {i}: some text of a typical length')";
const FILE_BYTES = 10 * 1024 * 1024;

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;

await using server = await startServer();
const id = await server.createSession();

async function call(stream: boolean): Promise<{ ms: number; events: number }> {
  const started = performance.now();
  const res = await server.request(`/v1/sessions/${id}`, {
    method: "POST",
    headers: stream ? { accept: "text/event-stream" } : {},
    body: JSON.stringify({ code: CODE }),
  });
  const text = await res.text();
  const ms = performance.now() - started;
  return { ms, events: text.split("event: stdout\n").length - 1 };
}

for (let i = 0; i < 3; i++) await call(i % 2 === 0); // warm up both paths
const plain: number[] = [];
const streamed: number[] = [];
let events = 0;
for (let i = 0; i < ROUNDS; i++) {
  plain.push((await call(false)).ms);
  const s = await call(true);
  streamed.push(s.ms);
  events = s.events;
}

const bytes = new Uint8Array(FILE_BYTES).map((_, i) => (i * 31) & 0xff);
const up: number[] = [];
const down: number[] = [];
for (let i = 0; i < 5; i++) {
  let started = performance.now();
  const put = await server.request(`/v1/sessions/${id}/files/big.bin`, {
    method: "PUT",
    body: bytes,
  });
  await put.body?.cancel();
  up.push(performance.now() - started);
  if (put.status >= 300) throw new Error(`upload: HTTP ${put.status}`);
  started = performance.now();
  const got = new Uint8Array(
    await (await server.request(`/v1/sessions/${id}/files/big.bin`)).arrayBuffer(),
  );
  down.push(performance.now() - started);
  if (got.length !== FILE_BYTES) throw new Error(`download: ${got.length} bytes`);
}

console.log(`medians (${ROUNDS} calls each, alternated; 5 file round trips)`);
console.log(
  `10 000 printed lines, plain call:    ${fmt(median(plain))} (min ${fmt(Math.min(...plain))})`,
);
console.log(
  `10 000 printed lines, streamed (SSE): ${fmt(median(streamed))} (min ${
    fmt(Math.min(...streamed))
  }), ${events} stdout events`,
);
console.log(
  `streaming costs:                      ${fmt(median(streamed) - median(plain))} per call`,
);
console.log(
  `10 MB upload (PUT):                   ${fmt(median(up))} (min ${fmt(Math.min(...up))})`,
);
console.log(
  `10 MB download (GET):                 ${fmt(median(down))} (min ${fmt(Math.min(...down))})`,
);
