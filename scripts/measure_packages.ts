/**
 * Measures what packages cost a call: the first call of a session that lists a small package
 * (two pure-Python wheels, already in the host's cache, sent as bytes and installed), the same
 * call in a session that lists nothing, and a second call that lists the package again.
 * Everything stays on loopback.
 *
 *   npx --yes deno@2.9.6 run --allow-read --allow-write --allow-run \
 *     --allow-net=127.0.0.1,localhost --allow-env scripts/measure_packages.ts
 */
import { startServer } from "../test/helpers/server.ts";
import { DirectoryServer, writeLockIndex } from "../test/helpers/wheels.ts";

const ROUNDS = 15;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const dir = await Deno.makeTempDir({ prefix: "moat-measure-" });
try {
  await writeLockIndex(dir, [
    { name: "measure-dep", files: { "measure_dep/__init__.py": "V = 41\n" } },
    {
      name: "measure-top",
      files: { "measure_top/__init__.py": "from measure_dep import V\nX = V + 1\n" },
      requires: ["measure-dep"],
    },
  ]);
  await using source = new DirectoryServer(dir);
  await using server = await startServer({
    policyText: `limits:\n  poolSize: 2\npackages: {"index": "${source.url}"}\n`,
  });
  const code = "import measure_top\nmeasure_top.X";
  const packages = ["measure_top", "math", "numpy.*"];
  await server.exec(code, { packages, session: await server.createSession() }); // warms the cache

  const first: number[] = [];
  const again: number[] = [];
  const none: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const session = await server.createSession();
    const a = await server.exec(code, { session, packages });
    if (a.result !== 42 || a.packages.loaded.length !== 2) throw new Error(JSON.stringify(a));
    first.push(a.durationMs);
    const b = await server.exec(code, { session, packages });
    if (b.packages.loaded.length !== 0) throw new Error("loaded twice");
    again.push(b.durationMs);
    const plain = await server.createSession();
    none.push((await server.exec("42", { session: plain })).durationMs);
    await server.request(`/v1/sessions/${session}`, { method: "DELETE" });
    await server.request(`/v1/sessions/${plain}`, { method: "DELETE" });
  }
  console.log(`server-side call time (durationMs), median of ${ROUNDS} fresh sessions:`);
  console.log(`  first call, installs 2 small wheels from bytes: ${median(first)} ms`);
  console.log(`  second call listing them again:                ${median(again)} ms`);
  console.log(`  a first call that lists no package:            ${median(none)} ms`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
