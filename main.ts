/**
 * Moat: reads the MOAT_* settings and the policy, makes the snapshot, warms the pool, serves
 * HTTP, and shuts down cleanly on SIGINT/SIGTERM.
 */
import { logCall } from "./src/audit.ts";
import { readConfig } from "./src/config.ts";
import { createApp } from "./src/http/app.ts";
import { loadPolicy } from "./src/policy/load.ts";
import { PackageLoader } from "./src/packages/loader.ts";
import { fetchPreload } from "./src/packages/preload.ts";
import { PYODIDE_DIR } from "./src/sandbox/host.ts";
import { Pool } from "./src/sandbox/pool.ts";
import { CACHE_DIR, loadSnapshot } from "./src/sandbox/snapshot.ts";
import { SessionManager } from "./src/session/manager.ts";

const SHUTDOWN_GRACE_MS = 10_000;
const say = (line: string) => console.error(`moat: ${line}`);

async function main(): Promise<void> {
  const started = performance.now();
  let config, policyFile;
  try {
    config = readConfig((name) => Deno.env.get(name));
    policyFile = await loadPolicy(config.policy);
  } catch (err) {
    say(`cannot start: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const { policy } = policyFile;

  let packages;
  try {
    packages = await PackageLoader.create(policy.packages, {
      pyodideDir: PYODIDE_DIR,
      cacheDir: `${CACHE_DIR}packages/`,
      log: say,
    });
  } catch (err) {
    say(`cannot start: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const preload = await fetchPreload(packages, say);

  const snapshot = await loadSnapshot(policy.limits, say);
  const pool = new Pool(
    policy.limits.poolSize,
    { limits: policy.limits, snapshot: snapshot.bytes, preload },
    say,
  );
  await pool.warm();
  const sessions = new SessionManager(policy, pool, logCall, packages, say);
  const app = createApp({
    token: config.token,
    policy,
    sessions,
    health: () => ({ poolReady: pool.ready, sessions: sessions.list().length }),
  });

  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) => {
      const ms = Math.round(performance.now() - started);
      if (config.tokenGenerated) say(`MOAT_TOKEN was not set; this run's token is ${config.token}`);
      say(
        `ready at http://${hostname}:${port}/ in ${ms} ms ` +
          `(policy ${policyFile.path.split("/").pop()}, snapshot ${
            snapshot.cached ? "from cache" : "made now"
          }, ${pool.ready} interpreters warm)`,
      );
    },
  }, app.fetch);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: finishing running calls (up to ${SHUTDOWN_GRACE_MS} ms), then stopping`);
    await sessions.shutdown(SHUTDOWN_GRACE_MS);
    await server.shutdown();
    say("stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
}

await main();
