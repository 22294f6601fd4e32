/**
 * The session-store contract: the same assertions for every backend (memory, kv, redis), run as
 * steps of one test per backend. A fixture opens clients on one shared set of data, so two
 * clients can race for a lease or read while the other writes.
 */
import assert from "node:assert/strict";
import { deriveKey, type StoreKey } from "../../src/codec/crypto.ts";
import { sealedStore } from "../../src/store/sealed.ts";
import { OFF_THREAD_BYTES, sealerOffThread } from "../../src/codec/sealer.ts";
import { applyDelta, diffImage } from "../../src/worker/checkpoint/delta.ts";
import {
  type Backend,
  type Checkpoint,
  CheckpointRejected,
  type SessionMeta,
} from "../../src/store/store.ts";

/** How a backend's test opens clients. */
export interface StoreFixture {
  /** A new client on the same data (memory: the same instance). */
  open(prefix?: string): Promise<Backend>;
  /** Whether `open(prefix)` isolates data by prefix (memory has none). */
  prefixes: boolean;
}

export const TEST_SECRET = "contract-test-secret-0123456789";

/** Metadata of a checkpoint numbered `seq`. */
export function meta(seq: number, extra: Partial<SessionMeta> = {}): SessionMeta {
  return {
    mode: "persistent",
    created: 1_700_000_000_000,
    lastUsed: 1_700_000_000_000 + seq,
    calls: seq,
    packages: ["regex"],
    seq,
    baseId: "base-1",
    ...extra,
  };
}

/** Random bytes (incompressible, so a large record really is large once stored). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

function checkpoint(seq: number, size: number): Checkpoint {
  const delta = randomBytes(size);
  delta[0] = seq; // so a mix of two would show in the bytes too
  return { meta: meta(seq), delta };
}

async function rejected(promise: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof CheckpointRejected, String(err));
    assert.equal(err.reason, reason, err.message);
    return true;
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs every contract step against the backend `fixture` opens. */
export async function storeContract(t: Deno.TestContext, fixture: StoreFixture): Promise<void> {
  const key: StoreKey = await deriveKey(TEST_SECRET);
  const backend = await fixture.open();
  // Big records are sealed in the sealing worker, as the server does; small ones in place.
  const store = sealedStore(backend, await sealerOffThread(TEST_SECRET));
  try {
    await t.step("a checkpoint is read back whole, and a newer one replaces it", async () => {
      const first = checkpoint(1, 1000);
      await store.putCheckpoint("s-1", first);
      assert.deepEqual(await store.getCheckpoint("s-1"), first);
      const second = checkpoint(2, 0);
      await store.putCheckpoint("s-1", second);
      assert.deepEqual(await store.getCheckpoint("s-1"), second);
      assert.deepEqual(await store.getMeta("s-1"), second.meta);
      assert.deepEqual(await store.listSessions(), [{ id: "s-1", meta: second.meta }]);
      assert.equal(await store.countSessions(), 1);
      assert.equal(await store.deleteSession("s-1"), true);
      assert.equal(await store.getCheckpoint("s-1"), undefined);
      assert.equal(await store.getMeta("s-1"), undefined);
      assert.equal(await store.deleteSession("s-1"), false);
      assert.equal(await store.countSessions(), 0);
    });

    await t.step("a 3 MB checkpoint and extra metadata fields survive the round trip", async () => {
      const big = { meta: meta(7, { note: "kept" }), delta: randomBytes(3 << 20) };
      await store.putCheckpoint("s-big", big);
      assert.deepEqual(await store.getCheckpoint("s-big"), big);
      await store.deleteSession("s-big");
    });

    await t.step(
      "a checkpoint handed over to the sealing thread round-trips; damage is refused",
      async () => {
        const big = checkpoint(9, 4 * OFF_THREAD_BYTES);
        const kept = big.delta.slice();
        await store.putCheckpoint("s-moved", { ...big, handOver: true });
        assert.equal(big.delta.byteLength, 0, "moved, not copied");
        assert.deepEqual((await store.getCheckpoint("s-moved"))?.delta, kept);
        const raw = (await backend.getCheckpoint("s-moved"))!;
        const flipped = raw.body.slice();
        flipped[OFF_THREAD_BYTES + 5] ^= 1;
        await backend.putCheckpoint("s-moved", { meta: raw.meta.slice(), body: flipped });
        await rejected(store.getCheckpoint("s-moved"), "tampered");
        await backend.putCheckpoint("s-moved-too", raw);
        await rejected(store.getCheckpoint("s-moved-too"), "tampered");
        for (const id of ["s-moved", "s-moved-too"]) await store.deleteSession(id);
      },
    );

    await t.step("links are read back, merged off the main thread, pruned, and bound", async () => {
      // Three images of a session's memory, each a delta against the one before.
      const images = [randomBytes(1 << 20)];
      for (let i = 1; i < 4; i++) {
        const next = images[i - 1].slice();
        next.set(randomBytes(3 * 4096), i * 200_000);
        images.push(next);
      }
      const deltas = images.slice(1).map((image, i) => diffImage(images[i], image));
      const links = [];
      for (const [i, delta] of deltas.entries()) {
        links.push(await store.putLink("s-l", String(i + 1), delta.slice(), i === 0));
      }
      assert.deepEqual(await store.getLink("s-l", links[1]), deltas[1]);
      const merged = await store.mergeLinks("s-l", links, "1-3");
      const rebuilt = applyDelta(images[0], await store.getLink("s-l", merged));
      assert.deepEqual(rebuilt, images[3], "the merged link makes the last image");
      await store.pruneLinks("s-l", ["1-3"]);
      await rejected(store.getLink("s-l", links[0]), "missing");
      await rejected(store.getLink("s-l", { ...merged, name: "2" }), "missing");
      // Another valid link of the session under the name is not the one named: refused.
      const again = await store.putLink("s-l", "9", deltas[0]);
      await store.putLink("s-l", "1-3", deltas[0]);
      await rejected(store.getLink("s-l", merged), "tampered");
      // Bytes moved to another session or name fail authentication.
      const raw = (await backend.getLink("s-l", "9"))!;
      await backend.putLink("s-other", "9", raw.slice());
      await rejected(store.getLink("s-other", again), "tampered");
      await backend.putLink("s-l", "8", raw);
      await rejected(store.getLink("s-l", { ...again, name: "8" }), "tampered");
      await store.putCheckpoint("s-l", checkpoint(1, 10));
      await store.deleteSession("s-l");
      assert.equal(
        await backend.getLink("s-l", "9"),
        undefined,
        "deleting a session drops its links",
      );
      await store.deleteSession("s-other");
      assert.equal(await backend.getLink("s-other", "9"), undefined);
    });

    await t.step("a base is written once per hash and read back", async () => {
      const base = randomBytes(200_000);
      assert.equal(await store.hasBase("h1"), false);
      assert.equal(await store.getBase("h1"), undefined);
      await store.putBase("h1", base);
      await store.putBase("h1", randomBytes(10));
      assert.equal(await store.hasBase("h1"), true);
      assert.deepEqual(await store.getBase("h1"), base);
    });

    await t.step("a reader during a large write sees the old or the new checkpoint", async () => {
      const writer = sealedStore(await fixture.open(), key);
      const reader = sealedStore(await fixture.open(), key);
      try {
        const versions = [checkpoint(1, 2 << 20), checkpoint(2, 2 << 20), checkpoint(3, 2 << 20)];
        await writer.putCheckpoint("s-race", versions[0]);
        let writing = true;
        const writes = (async () => {
          for (const v of versions.slice(1)) await writer.putCheckpoint("s-race", v);
          writing = false;
        })();
        let reads = 0;
        do {
          const got = await reader.getCheckpoint("s-race");
          assert.ok(got, "the checkpoint vanished during a write");
          const expected = versions[got.meta.seq - 1];
          assert.ok(expected && got.delta.byteLength === expected.delta.byteLength);
          assert.ok(got.delta.every((b, i) => b === expected.delta[i]), "a mix of two writes");
          reads++;
        } while (writing || reads < 2);
        await writes;
        assert.equal((await reader.getCheckpoint("s-race"))?.meta.seq, 3);
        await writer.deleteSession("s-race");
      } finally {
        await writer.close();
        await reader.close();
      }
    });

    await t.step("only one of two clients holds a lease; it expires or is released", async () => {
      const a = await fixture.open();
      const b = await fixture.open();
      try {
        assert.equal(await a.acquireLease("s-lease", "A", 400), true);
        assert.equal(await b.acquireLease("s-lease", "B", 400), false);
        assert.equal((await b.leaseHolder("s-lease"))?.instanceId, "A");
        assert.equal(await b.releaseLease("s-lease", "B"), false);
        assert.equal(await b.renewLease("s-lease", "B", 400), false);
        assert.equal(await a.renewLease("s-lease", "A", 400), true);
        assert.equal(await a.acquireLease("s-lease", "A", 400), true, "the holder may re-acquire");
        await sleep(600);
        assert.equal(await a.leaseHolder("s-lease"), undefined);
        assert.equal(await b.acquireLease("s-lease", "B", 10_000), true, "expired: B takes over");
        assert.equal(await a.renewLease("s-lease", "A", 400), false);
        assert.equal(await a.releaseLease("s-lease", "A"), false);
        assert.equal(await b.releaseLease("s-lease", "B"), true);
        const race = await Promise.all([
          a.acquireLease("s-race2", "A", 10_000),
          b.acquireLease("s-race2", "B", 10_000),
        ]);
        assert.equal(race.filter(Boolean).length, 1, `both asked at once: ${race}`);
      } finally {
        await a.close();
        await b.close();
      }
    });

    await t.step("a dead holder's lease is taken over by one instance, only from it", async () => {
      const a = await fixture.open();
      const b = await fixture.open();
      try {
        assert.equal(await a.acquireLease("s-take", "A", 10_000), true);
        assert.equal(await b.takeLease("s-take", "C", "B", 10_000), false, "C does not hold it");
        const race = await Promise.all([
          a.takeLease("s-take", "A", "X", 10_000),
          b.takeLease("s-take", "A", "B", 10_000),
        ]);
        assert.equal(race.filter(Boolean).length, 1, `both took over at once: ${race}`);
        const holder = (await a.leaseHolder("s-take"))?.instanceId;
        assert.ok(holder === "X" || holder === "B", `holder ${holder}`);
        assert.equal(await a.renewLease("s-take", "A", 10_000), false, "A lost it");
        await a.releaseLease("s-take", holder!);
      } finally {
        await a.close();
        await b.close();
      }
    });

    await t.step("heartbeat records are read, listed, and gone when they expire", async () => {
      const a = await fixture.open();
      const b = await fixture.open();
      try {
        await a.putInstance("i-one", "record-1", 10_000);
        await a.putInstance("i-short", "record-2", 300);
        assert.equal(await b.getInstance("i-one"), "record-1");
        assert.equal(await b.getInstance("i-none"), undefined);
        const listed = (await b.listInstances()).map((i) => `${i.id}=${i.record}`).sort();
        assert.deepEqual(listed, ["i-one=record-1", "i-short=record-2"]);
        await sleep(500);
        assert.equal(await b.getInstance("i-short"), undefined);
        assert.deepEqual((await b.listInstances()).map((i) => i.id), ["i-one"]);
        await a.deleteInstance("i-one");
        assert.equal(await b.getInstance("i-one"), undefined);
      } finally {
        await a.close();
        await b.close();
      }
    });

    await t.step("tampered, truncated, moved or foreign records are rejected", async () => {
      const reports: CheckpointRejected[] = [];
      const watched = sealedStore(backend, key, { onRejected: (err) => reports.push(err) });
      await store.putCheckpoint("s-a", checkpoint(1, 5000));
      await store.putCheckpoint("s-b", checkpoint(2, 5000));
      const raw = (await backend.getCheckpoint("s-a"))!;

      const flipped = raw.body.slice();
      flipped[flipped.length - 20] ^= 1;
      await backend.putCheckpoint("s-a", { meta: raw.meta.slice(), body: flipped });
      await rejected(store.getCheckpoint("s-a"), "tampered");

      await backend.putCheckpoint("s-a", { meta: raw.meta.slice(), body: raw.body.slice(0, 20) });
      await rejected(store.getCheckpoint("s-a"), "truncated");
      await backend.putCheckpoint("s-a", { meta: raw.meta.slice(), body: raw.body.slice(0, 3000) });
      await rejected(store.getCheckpoint("s-a"), "tampered");

      const other = (await backend.getCheckpoint("s-b"))!;
      await backend.putCheckpoint("s-a", { meta: raw.meta.slice(), body: other.body.slice() });
      await rejected(store.getCheckpoint("s-a"), "tampered");
      await backend.putCheckpoint("s-c", other);
      await rejected(store.getCheckpoint("s-c"), "tampered");

      const badMeta = raw.meta.slice();
      badMeta[badMeta.length - 1] ^= 1;
      await backend.putCheckpoint("s-a", { meta: badMeta, body: raw.body.slice() });
      await rejected(store.getCheckpoint("s-a"), "tampered");
      const listed = await watched.listSessions();
      assert.deepEqual(listed.map((s) => s.id).sort(), ["s-b"]);
      assert.deepEqual(reports.map((r) => r.record).sort(), ["meta s-a", "meta s-c"]);

      const foreign = sealedStore(backend, await deriveKey("another-key-entirely-000"));
      await rejected(foreign.getCheckpoint("s-b"), "wrong-key");
      await rejected(foreign.getBase("h1"), "wrong-key");
      for (const id of ["s-a", "s-b", "s-c"]) await store.deleteSession(id);
    });

    if (fixture.prefixes) {
      await t.step("stores under different prefixes do not see each other", async () => {
        const other = await fixture.open("moat-other");
        try {
          await store.putCheckpoint("s-p", checkpoint(1, 100));
          assert.equal(await other.getCheckpoint("s-p"), undefined);
          assert.deepEqual(await other.listMeta(), []);
          assert.equal(await other.hasBase("h1"), false);
          assert.equal(await backend.acquireLease("s-p", "A", 10_000), true);
          assert.equal(await other.acquireLease("s-p", "B", 10_000), true);
          await backend.releaseLease("s-p", "A");
          await other.releaseLease("s-p", "B");
          await store.deleteSession("s-p");
        } finally {
          await other.close();
        }
      });
    }

    await t.step("ping answers while the store is up", async () => {
      await store.ping();
    });
  } finally {
    await store.close();
  }
}
