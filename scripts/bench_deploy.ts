/**
 * Deploy mode, measured on this machine: cold start to first answer with and without the
 * snapshot Deno Deploy's build step ships, and the resident memory of an idle instance against
 * Deploy's 768 MB. Each server runs as Deploy starts an app (`deno run -A main.ts`,
 * `DENO_DEPLOY=true`, policies/deploy.yaml) in a copy of the app directory.
 *
 *   deno run --no-prompt --allow-read --allow-write --allow-run --allow-net=127.0.0.1,localhost \
 *     --allow-env scripts/bench_deploy.ts [--runs N]
 */
import { loadPolicy } from "../src/policy/load.ts";
import { copyApp } from "../test/helpers/app_copy.ts";
import { startServer, type TestServer } from "../test/helpers/server.ts";
import { rssBytes } from "../test/helpers/proc.ts";

const runs = Number(Deno.args[Deno.args.indexOf("--runs") + 1]) || 3;
const DEPLOY_LIMIT_MB = 768;
const sessions = (await loadPolicy("deploy")).policy.limits.sessions;

async function rssMb(pid: number): Promise<number> {
  return await rssBytes(pid) / 2 ** 20;
}

/** Spawn to the first answer of a trivial call, in ms; the server is left running. */
async function coldStart(app: string, tmp: string): Promise<{ ms: number; server: TestServer }> {
  const started = performance.now();
  const server = await startServer({
    deploy: true,
    root: app,
    env: { TMPDIR: tmp, MOAT_POLICY: "deploy" },
  });
  const answer = await server.exec("1 + 1");
  if (answer.result !== 2) throw new Error(JSON.stringify(answer));
  return { ms: performance.now() - started, server };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const dir = await Deno.makeTempDir({ prefix: "moat-bench-deploy-" });
try {
  const app = `${dir}/app/`;
  await copyApp(app);

  // Without the shipped snapshot: the app directory cannot be written and TMPDIR is empty, so
  // every start makes the snapshot itself.
  await Deno.writeTextFile(`${app}.moat-cache`, "not a directory");
  const without: number[] = [];
  for (let i = 0; i < runs; i++) {
    const tmp = await Deno.makeTempDir({ dir, prefix: "tmp-" });
    const { ms, server } = await coldStart(app, tmp);
    without.push(ms);
    await server[Symbol.asyncDispose]();
  }

  // With it: `deno task snapshot` (the build step) first.
  await Deno.remove(`${app}.moat-cache`);
  const build = await new Deno.Command(Deno.execPath(), {
    args: ["task", "snapshot"],
    cwd: app,
    env: { DENO_DEPLOY: "true", CI: "true" },
    stdout: "null",
    stderr: "null",
  }).output();
  if (!build.success) throw new Error("deno task snapshot failed");
  const withSnapshot: number[] = [];
  let idle = { fresh: 0, oneSession: 0, full: 0 };
  let heldSessions = 0;
  for (let i = 0; i < runs; i++) {
    const { ms, server } = await coldStart(app, dir);
    withSnapshot.push(ms);
    if (i === runs - 1) {
      // Idle memory: just started (the default session used once), then with sessions idle.
      await new Promise((r) => setTimeout(r, 3000));
      const fresh = await rssMb(server.pid!);
      const a = await server.createSession();
      await server.exec("x = list(range(1000))", { session: a });
      await new Promise((r) => setTimeout(r, 3000));
      const oneSession = await rssMb(server.pid!);
      // Every session the policy allows (the default one included), each used once.
      let held = 2;
      for (; held < sessions; held++) {
        await server.exec("y = 1", { session: await server.createSession() });
      }
      heldSessions = held;
      await new Promise((r) => setTimeout(r, 3000));
      idle = { fresh, oneSession, full: await rssMb(server.pid!) };
    }
    await server[Symbol.asyncDispose]();
  }

  const pct = (mb: number) => `${mb.toFixed(0)} MB (${(100 * mb / DEPLOY_LIMIT_MB).toFixed(0)}%)`;
  console.log(`deploy mode (policies/deploy.yaml), ${runs} runs each, p50:`);
  console.log(`| measure | result |`);
  console.log(`| --- | --- |`);
  console.log(
    `| cold start to first answer, shipped snapshot | ${median(withSnapshot).toFixed(0)} ms (${
      withSnapshot.map((m) => m.toFixed(0)).join(", ")
    }) |`,
  );
  console.log(
    `| cold start to first answer, no snapshot (made at start) | ${
      median(without).toFixed(0)
    } ms (${without.map((m) => m.toFixed(0)).join(", ")}) |`,
  );
  console.log(
    `| RSS idle, just started (1 interpreter warm, default session used) | ${
      pct(idle.fresh)
    } of ${DEPLOY_LIMIT_MB} MB |`,
  );
  console.log(`| RSS idle, one more session used | ${pct(idle.oneSession)} |`);
  console.log(
    `| RSS idle, ${heldSessions} sessions used once (the policy allows ${sessions}) | ${
      pct(idle.full)
    } |`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
