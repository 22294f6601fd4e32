import assert from "node:assert/strict";
import { SerialQueue } from "./queue.ts";

Deno.test("tasks run one at a time, in the order they were added", async () => {
  const queue = new SerialQueue();
  const order: string[] = [];
  const slow = queue.run(async () => {
    order.push("a start");
    await new Promise((r) => setTimeout(r, 20));
    order.push("a end");
  });
  const fast = queue.run(() => {
    order.push("b");
  });
  assert.equal(queue.size, 2);
  await Promise.all([slow, fast]);
  assert.deepEqual(order, ["a start", "a end", "b"]);
  assert.equal(queue.size, 0);
});

Deno.test("a failing task rejects its caller and does not stop the next one", async () => {
  const queue = new SerialQueue();
  const failing = queue.run(() => Promise.reject(new Error("boom")));
  const next = queue.run(() => 42);
  await assert.rejects(failing, /boom/);
  assert.equal(await next, 42);
});

Deno.test("running and waiting say what the queue holds now", async () => {
  const queue = new SerialQueue();
  let release!: () => void;
  const first = queue.run(() => new Promise<void>((r) => release = r));
  queue.run(() => {});
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(queue.running, true);
  assert.equal(queue.waiting, 1);
  release();
  await first;
  await queue.idle();
  assert.equal(queue.running, false);
  assert.equal(queue.waiting, 0);
});
