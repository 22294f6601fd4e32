import assert from "node:assert/strict";
import { Held } from "../session/held.ts";
import { type DropReason, unreadGuard } from "./deliver.ts";

Deno.test("an answer waiting for its client is charged, and dropped when the session is stopped", () => {
  const held = new Held();
  const dropped: DropReason[] = [];
  const guard = unreadGuard(held, 1000, (why) => dropped.push(why));
  assert.equal(held.bytes, 1000);
  guard.wait();
  assert.equal(held.dropAll(), 1);
  assert.deepEqual(dropped, ["memory"]);
  assert.equal(held.bytes, 0);
  guard.stop(); // harmless after a drop
  assert.equal(held.bytes, 0);
});

Deno.test("a stream with nothing waiting stays charged but is not dropped", () => {
  const held = new Held();
  const dropped: DropReason[] = [];
  const guard = unreadGuard(held, 10, (why) => dropped.push(why));
  guard.wait();
  guard.idle(); // the client took everything there was
  assert.equal(held.dropAll(), 0);
  assert.deepEqual(dropped, []);
  guard.stop();
  assert.equal(held.bytes, 0);
});
