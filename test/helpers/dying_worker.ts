/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * A stand-in for src/worker/main.ts that speaks the same messages but, asked to run code,
 * dies the way the code names: `exit` (Deno.exit), `close` (self.close), `throw` (an uncaught
 * error), `overflow` (a JavaScript stack overflow), `hang` (never answers). `idle-exit` answers,
 * then exits a moment later, while the host thinks it idle. Anything else answers normally.
 */
// deno-lint-ignore no-explicit-any
let lifeline: any;

function reply(id: number, result: string) {
  self.postMessage({
    id,
    ok: true,
    reply: {
      result,
      error: "null",
      stdout: "",
      stderr: "",
      cut: { stdout: false, stderr: false, result: false },
      memoryBytes: 0,
    },
  });
}

// deno-lint-ignore no-explicit-any
self.onmessage = (event: MessageEvent<any>) => {
  const msg = event.data;
  if (msg.kind === "boot") {
    lifeline = msg.lifeline;
    self.postMessage({ id: msg.id, ok: true, reply: { bootMs: 0, memoryBytes: 0 } });
    return;
  }
  if (msg.kind !== "exec") return;
  const overflow = (n: number): number => overflow(n + 1) + 1;
  switch (msg.code) {
    case "exit":
      Deno.exit(3);
      break;
    case "close":
      self.close();
      break;
    case "throw":
      throw new Error("boom");
    case "overflow":
      overflow(0);
      break;
    case "hang":
      for (;;) { /* busy, never answers */ }
    case "idle-exit":
      reply(msg.id, JSON.stringify("bye"));
      setTimeout(() => Deno.exit(0), 50);
      break;
    default:
      reply(msg.id, JSON.stringify(`ran ${msg.code}`));
  }
  void lifeline;
};
