/**
 * Attacks on an instance's main thread and disk through `packages`: a call listing 100 000
 * names, and a stream of distinct wheels from a simple index meant to fill the disk. The
 * policy's `packages.maxPerCall` and `packages.cacheMb` bound both.
 */
import assert from "node:assert/strict";
import { CACHE_DIR } from "../../src/paths.ts";
import { startServer } from "../helpers/server.ts";
import { DirectoryServer, type WheelSpec, writeSimpleIndex } from "../helpers/wheels.ts";

Deno.test("a call listing 100 000 unknown packages is refused at once, naming the limit", async () => {
  await using server = await startServer({
    policyText: "limits:\n  poolSize: 1\npackages:\n  maxPerCall: 50\n",
  });
  const names = Array.from({ length: 100_000 }, (_, i) => `no-such-package-${i}`);
  const call = server.post("/", { code: "1", packages: names });
  // /health keeps answering while the body is read and refused.
  const health = await server.request("/health", { auth: false });
  assert.equal(health.status, 200);
  await health.body?.cancel();
  const { status, body } = await call;
  assert.equal(status, 400);
  assert.equal(body.error.name, "BadRequest");
  assert.match(
    body.error.message,
    /100000 entries, more than the policy's packages\.maxPerCall \(50\)/,
  );
  // Nothing was queued or printed for it, and the session serves the next call.
  assert.ok(server.stderr.length < 10_000, `stderr grew to ${server.stderr.length} characters`);
  assert.equal((await server.exec("6 * 7", { packages: ["math", "json"] })).result, 42);
  const named = await server.post("/v1/sessions", { mode: "persistent" });
  const over = await server.post(`/v1/sessions/${named.body.id}`, {
    code: "1",
    packages: names.slice(0, 51),
  });
  assert.equal(over.status, 400);
});

/** A wheel of `kb` KiB that does not compress, so its size on disk is what it weighs. */
function heavyWheel(i: number, kb: number): WheelSpec {
  return {
    name: `filler-${i}`,
    files: {
      [`filler_${i}/__init__.py`]: `N = ${i}\n`,
      [`filler_${i}/blob.bin`]: noise(kb * 1024),
    },
  };
}

/** Bytes that do not compress (getRandomValues fills at most 64 KiB at a time). */
function noise(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile) total += (await Deno.stat(`${dir}${entry.name}`)).size;
    }
  } catch {
    // no directory yet
  }
  return total;
}

Deno.test("a stream of distinct wheels fills no more of the disk than packages.cacheMb", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-cache-bound-" });
  const count = 12;
  try {
    await writeSimpleIndex(
      `${dir}/simple`,
      Array.from({ length: count }, (_, i) => heavyWheel(i, 300)),
    );
    await using source = new DirectoryServer(dir);
    await using server = await startServer({
      policyText:
        `limits:\n  poolSize: 1\npackages:\n  pypi: "${source.url}simple/"\n  cacheMb: 1\n`,
    });
    const cache = `${CACHE_DIR}packages/`;
    let most = 0;
    for (let i = 0; i < count; i++) {
      const answer = await server.exec(`import filler_${i}\nfiller_${i}.N`, {
        packages: [`filler-${i}`],
      });
      assert.equal(answer.error, null, JSON.stringify(answer.error));
      assert.equal(answer.result, i);
      most = Math.max(most, await bytesUnder(cache));
    }
    // 12 wheels of 300 KiB were installed; at most 1 MiB of them stayed on disk at any time.
    assert.ok(most <= 1024 * 1024, `the cache held ${most} bytes`);
    assert.ok(most >= 300 * 1024, `the cache kept nothing (${most} bytes)`);
    // An evicted wheel is simply downloaded again when a new session asks for it.
    const fresh = await server.createSession();
    const again = await server.exec("import filler_0\nfiller_0.N", {
      session: fresh,
      packages: ["filler-0"],
    });
    assert.equal(again.result, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
