/**
 * Attacks on the worker's JavaScript buffer caps: every way of allocating a buffer, including
 * the factories that do not go through a constructor, is refused past the cap.
 */
import assert from "node:assert/strict";

Deno.test("no way of allocating a JavaScript buffer gets past the worker's cap", async () => {
  const worker = new Worker(new URL("./helpers/buffer_probe.ts", import.meta.url), {
    type: "module",
  });
  try {
    const answer = new Promise<{ through: string[]; refused: string[] }>((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(e.message));
    });
    worker.postMessage("go");
    const { through, refused } = await answer;
    assert.deepEqual(through, [], `allocations past the cap got through: ${through.join(", ")}`);
    assert.deepEqual(refused, [], `small allocations were refused: ${refused.join(", ")}`);
  } finally {
    worker.terminate();
  }
});
