/**
 * Where a restore's time goes, in this process (no server, no store): an interpreter is given
 * some state and checkpointed, and the checkpoint is restored 5 times into a new worker (as
 * before the prepared pool) and 5 times into a prepared one (`Interpreter.prepare`, given a
 * second to instantiate). Prints the host's time for each and the worker's own parts.
 * `deno run -A scripts/profile_restore.ts`
 */
import { Interpreter } from "../src/sandbox/interpreter.ts";
import { loadSnapshot } from "../src/sandbox/snapshot.ts";
import { loadDeltaBase } from "../src/sandbox/delta_base.ts";
import { PolicySchema } from "../src/policy/schema.ts";

const limits = PolicySchema.parse({}).limits;
const { bytes: snapshot } = await loadSnapshot(() => {});
const base = await loadDeltaBase({ limits, snapshot });
const options = { limits, snapshot, deltaBase: base.bytes };
const states: Record<string, string> = {
  small: "x = 41\nimport json, math\ndef f(a): return a + x",
  "~10 MB of lists": "big = [list(range(1000)) for _ in range(300)]",
};

function p50(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

for (const [name, code] of Object.entries(states)) {
  const source = await Interpreter.start(options);
  await source.exec(code, { timeoutMs: 30_000, graceMs: 1000 });
  const taken = await source.checkpoint(base.id);
  source.terminate();
  for (const mode of ["new worker", "prepared worker"]) {
    const times: number[] = [];
    const parts: string[] = [];
    for (let i = 0; i < 5; i++) {
      const prepared = mode === "prepared worker"
        ? Interpreter.prepare({ ...options, snapshot })
        : undefined;
      if (prepared) await new Promise((r) => setTimeout(r, 1000));
      const started = performance.now();
      const restored = await Interpreter.start({
        ...options,
        checkpoint: new Uint8Array(taken.bytes) as Uint8Array<ArrayBuffer>,
      }, prepared);
      times.push(performance.now() - started);
      const r = restored.restored!;
      const check = await restored.exec("x if 'x' in globals() else len(big)", {
        timeoutMs: 5000,
        graceMs: 1000,
      });
      if (check.kind !== "done" || check.reply.result === "null") throw new Error("not restored");
      parts.push(
        `${times.at(-1)!.toFixed(0)} (worker ${restored.bootMs.toFixed(0)}: unpack+delta ` +
          `${r.prepareMs?.toFixed(0)}, adopt ${r.adoptMs?.toFixed(1)})`,
      );
      restored.terminate();
    }
    console.log(
      `${name} (${(taken.bytes.length / 1e6).toFixed(2)} MB), ${mode}: restore p50 ` +
        `${p50(times).toFixed(0)} ms; each: ${parts.join(", ")}`,
    );
  }
}
