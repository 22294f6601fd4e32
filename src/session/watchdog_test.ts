import assert from "node:assert/strict";
import type { Interpreter, KillReason } from "../sandbox/interpreter.ts";
import { Held } from "./held.ts";
import { holderOf, MemoryWatchdog } from "./watchdog.ts";

const MB = 1024 * 1024;

/** Just what the watchdog reads of an interpreter, and the kills it asked for. */
class FakeInterpreter {
  kills: { reason: KillReason; detail: string }[] = [];
  readonly #exited = Promise.withResolvers<void>();
  readonly exited = this.#exited.promise;
  constructor(public memoryBytes: number, public alive = true) {}
  kill(reason: KillReason, detail: string): void {
    this.kills.push({ reason, detail });
    this.alive = false;
  }
  /** Its worker's thread has ended: the memory is back with the system. */
  async exit(): Promise<void> {
    this.#exited.resolve();
    await this.exited;
    await Promise.resolve();
  }
}

function watchdog(
  budgetMb: number,
  rssMb: () => number,
  fakes: FakeInterpreter[],
  held: Held[] = [],
  stuckMb = 0,
) {
  const log: string[] = [];
  const dog = new MemoryWatchdog(
    budgetMb * MB,
    () =>
      fakes.map((f, i) =>
        holderOf({ interpreter: f as unknown as Interpreter, held: held[i] ?? new Held() })
      ),
    (line) => log.push(line),
    () => rssMb() * MB,
    () => stuckMb * MB,
  );
  return { dog, log };
}

Deno.test("under budget, no interpreter is stopped", () => {
  const fakes = [new FakeInterpreter(300 * MB), new FakeInterpreter(100 * MB)];
  const { dog, log } = watchdog(800, () => 800, fakes);
  try {
    assert.equal(dog.check(10_000), false);
    assert.deepEqual(fakes.map((f) => f.kills.length), [0, 0]);
    assert.deepEqual(log, []);
  } finally {
    dog.stop();
  }
});

Deno.test("over budget, the largest live interpreter is stopped for memory", () => {
  const fakes = [
    new FakeInterpreter(100 * MB),
    new FakeInterpreter(300 * MB),
    new FakeInterpreter(200 * MB),
  ];
  const { dog, log } = watchdog(800, () => 900, fakes);
  try {
    assert.equal(dog.check(10_000), true);
    assert.deepEqual(fakes.map((f) => f.kills.length), [0, 1, 0]);
    const [{ reason, detail }] = fakes[1].kills;
    assert.equal(reason, "memory");
    assert.match(detail, /it used 900 MB, over its budget of 800 MB/);
    assert.match(detail, /limits\.serverMemoryMb/);
    assert.match(detail, /held the most \(300 MB\)/);
    assert.equal(log.length, 1);
    assert.match(
      log[0],
      /900 MB over the budget of 800 MB; stopping a session holding 300 MB/,
    );
  } finally {
    dog.stop();
  }
});

Deno.test("after a kill the watchdog waits for the worker to end before the next", async () => {
  const fakes = [new FakeInterpreter(300 * MB), new FakeInterpreter(200 * MB)];
  const { dog } = watchdog(800, () => 900, fakes);
  try {
    assert.equal(dog.check(10_000), true);
    assert.equal(dog.check(10_500), false);
    // The stopped interpreter's 300 MB count as on their way out until its worker has ended,
    // however long that takes: the next one (often the session's own replacement) is not
    // stopped meanwhile. (The interpreter bounds the wait: `exited` settles 30 s after a stop.)
    assert.equal(dog.check(11_000), false);
    assert.equal(dog.check(40_000), false);
    assert.equal(fakes[1].kills.length, 0);
    // Ended, and the server is still over: the next largest is stopped.
    await fakes[0].exit();
    assert.equal(dog.check(40_001), true);
    assert.equal(fakes[1].kills.length, 1);
    assert.equal(fakes[0].kills.length, 1);
  } finally {
    dog.stop();
  }
});

Deno.test("a worker that ended ends the wait: a new excess is acted on at once", async () => {
  let rss = 900;
  const fakes = [new FakeInterpreter(300 * MB), new FakeInterpreter(200 * MB)];
  const { dog } = watchdog(800, () => rss, fakes);
  try {
    assert.equal(dog.check(10_000), true);
    rss = 620; // released
    await fakes[0].exit();
    assert.equal(dog.check(11_000), false);
    rss = 850; // then something else grows past the budget
    assert.equal(dog.check(11_200), true);
    assert.equal(fakes[1].kills.length, 1);
  } finally {
    dog.stop();
  }
});

Deno.test("once back under budget, no further interpreter is stopped", () => {
  let rss = 900;
  const fakes = [new FakeInterpreter(300 * MB), new FakeInterpreter(200 * MB)];
  const { dog } = watchdog(800, () => rss, fakes);
  try {
    assert.equal(dog.check(10_000), true);
    rss = 600;
    assert.equal(dog.check(20_000), false);
    assert.equal(fakes[1].kills.length, 0);
  } finally {
    dog.stop();
  }
});

Deno.test("interpreters already dead are ignored, however large", () => {
  const dead = new FakeInterpreter(700 * MB, false);
  const live = new FakeInterpreter(50 * MB);
  const { dog } = watchdog(800, () => 900, [dead, live]);
  try {
    assert.equal(dog.check(10_000), true);
    assert.equal(dead.kills.length, 0);
    assert.equal(live.kills.length, 1);
  } finally {
    dog.stop();
  }
});

Deno.test("over budget with no live interpreter, nothing is stopped and no quiet period starts", () => {
  const fakes = [new FakeInterpreter(500 * MB, false)];
  const { dog, log } = watchdog(800, () => 900, fakes);
  try {
    assert.equal(dog.check(10_000), false);
    assert.deepEqual(log, []);
    const late = new FakeInterpreter(10 * MB);
    fakes.push(late);
    assert.equal(dog.check(10_001), true);
    assert.equal(late.kills.length, 1);
  } finally {
    dog.stop();
  }
});

Deno.test("what a session holds outside its interpreter is charged to it, and dropped", () => {
  const fakes = [new FakeInterpreter(200 * MB), new FakeInterpreter(50 * MB)];
  const held = [new Held(), new Held()];
  let dropped = 0;
  // 300 MB of unread answers (droppable) and 20 MB of queued calls (not) beside 50 MB.
  const releaseAnswer = held[1].add(300 * MB, () => {
    dropped++;
    releaseAnswer();
  });
  held[1].add(20 * MB);
  const { dog, log } = watchdog(800, () => 900, fakes, held);
  try {
    assert.equal(dog.check(10_000), true);
    assert.deepEqual(fakes.map((f) => f.kills.length), [0, 1]);
    assert.match(fakes[1].kills[0].detail, /held the most \(370 MB\)/);
    assert.match(log[0], /stopping a session holding 370 MB/);
    assert.equal(dropped, 1);
    assert.equal(held[1].bytes, 20 * MB);
  } finally {
    dog.stop();
  }
});

Deno.test("memory held by stuck workers is left out: no session is stopped for it", () => {
  // 400 MB sit in a worker that never ended (Python inside one C function); the sessions hold
  // 300 MB. Stopping them could not bring the 400 MB back.
  const fakes = [new FakeInterpreter(200 * MB), new FakeInterpreter(100 * MB)];
  const { dog } = watchdog(800, () => 1000, fakes, [], 400);
  try {
    assert.equal(dog.check(10_000), false);
    assert.deepEqual(fakes.map((f) => f.kills.length), [0, 0]);
    // Past the budget by what the sessions themselves hold: the largest is stopped.
    const { dog: over } = watchdog(500, () => 1000, fakes, [], 400);
    try {
      assert.equal(over.check(10_000), true);
      assert.equal(fakes[0].kills.length, 1);
    } finally {
      over.stop();
    }
  } finally {
    dog.stop();
  }
});
