/**
 * Moat: reads the MOAT_* settings and the policy, makes the snapshot, warms the pool, serves
 * HTTP (or, with `--stdio`, MCP on stdin/stdout), and shuts down cleanly on SIGINT/SIGTERM.
 */
import { auditInstance, auditToStderr, callLogger, logEvent, logSecurity } from "./src/audit.ts";
import { CACHE_DIR, PYODIDE_DIR } from "./src/paths.ts";
import { readConfig } from "./src/config.ts";
import { proveWorkersNarrowed, writableCacheDir } from "./src/deploy/startup.ts";
import { applyMemoryFlags } from "./src/deploy/v8_flags.ts";
import { createApp } from "./src/http/app.ts";
import { readiness } from "./src/http/ready.ts";
import { McpHttp } from "./src/mcp/http.ts";
import { serveStdio } from "./src/mcp/stdio.ts";
import { broaderThanNeeded } from "./src/permissions/check.ts";
import { Quotas } from "./src/tenants/quotas.ts";
import {
  loadTenants,
  type Tenant,
  tenantPolicies,
  type TenantPolicy,
  Tokens,
  tokenVariables,
} from "./src/tenants/tenants.ts";
import { metrics } from "./src/metrics.ts";
import { grantsForAll } from "./src/permissions/flags.ts";
import { loadPolicy } from "./src/policy/load.ts";
import { allowedHosts, type Policy } from "./src/policy/schema.ts";
import { loadSnapshot } from "./src/sandbox/snapshot.ts";
import { buildScope, type Scope } from "./src/scope.ts";
import { TenantScopeMap } from "./src/tenants/scopes.ts";
import { stuckWorkers } from "./src/sandbox/interpreter.ts";
import { Checkpoints, LEASE_TTL_MS } from "./src/session/checkpoints.ts";
import { startCluster } from "./src/cluster/cluster.ts";
import { storeSecret } from "./src/codec/crypto.ts";
import { SessionManager } from "./src/session/manager.ts";
import { describeStore, openStore } from "./src/store/open.ts";

/** How long shutdown lets calls finish and checkpoints be stored; Deploy kills 5 s after SIGINT. */
const SHUTDOWN_GRACE_MS = 10_000;
const DEPLOY_SHUTDOWN_GRACE_MS = 4_000;
const say = (line: string) => console.error(`moat: ${line}`);
/** `deno task mcp`: serve MCP over stdio instead of HTTP; stdout carries only the protocol. */
const STDIO = Deno.args.includes("--stdio");
if (STDIO) auditToStderr();

/**
 * Refuses to run with broader permissions than the policy needs, unless the operator set
 * MOAT_ALLOW_BROAD_PERMISSIONS=1, which is logged as a warning and a security event.
 */
async function selfCheck(
  policy: Policy,
  where: Parameters<typeof grantsForAll>[1],
  tenantPolicies: TenantPolicy[],
): Promise<void> {
  const extra = await broaderThanNeeded(grantsForAll(policy, where, tenantPolicies));
  if (extra.length === 0) return;
  const list = extra.join(", ");
  if (Deno.env.get("MOAT_ALLOW_BROAD_PERMISSIONS") === "1") {
    say(
      `WARNING: running with broader permissions than the policy needs (${list}) ` +
        `because MOAT_ALLOW_BROAD_PERMISSIONS=1`,
    );
    logSecurity("broad-permissions", { extra });
    return;
  }
  say(
    `cannot start: this process holds broader permissions than the policy needs: ${list}. ` +
      `Start it with 'deno task start' (flags: 'deno task flags'), or set ` +
      `MOAT_ALLOW_BROAD_PERMISSIONS=1 to run anyway.`,
  );
  Deno.exit(1);
}

async function main(): Promise<void> {
  const started = performance.now();
  let config, policyFile;
  try {
    // A compiled binary bakes in `--policy=NAME`, the policy its flags were derived for.
    const baked = Deno.args.find((a) => a.startsWith("--policy="))?.slice("--policy=".length);
    config = readConfig((name) =>
      Deno.env.get(name) ?? (name === "MOAT_POLICY" ? baked : undefined)
    );
    policyFile = await loadPolicy(config.policy);
  } catch (err) {
    say(`cannot start: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const { policy } = policyFile;
  // Tenants: their tokens are read now; a bad file or a token that is not set stops the start.
  let tenants: Tenant[] = [];
  let tokens: Tokens;
  let ownPolicies: Awaited<ReturnType<typeof tenantPolicies>>;
  try {
    if (config.tenants) tenants = await loadTenants(config.tenants);
    ownPolicies = await tenantPolicies(tenants, policyFile.path);
    tokens = new Tokens(config.token, tenants);
  } catch (err) {
    say(`cannot start: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const quotas = new Quotas(tenants);
  const mode = config.deploy ? "deploy" : "local";
  auditInstance(config.instanceId);
  metrics.instance(config.instanceId, mode);
  // Deploy mode: the platform runs every app with --allow-all and takes no flags, so instead of
  // refusing broad permissions, start-up proves that no worker inherits them.
  if (config.deploy) {
    applyMemoryFlags(); // before the first worker
    try {
      const hosts = [policy, ...ownPolicies.policies.map((t) => t.policy)].flatMap(allowedHosts);
      await proveWorkersNarrowed([...new Set(hosts)], say);
    } catch (err) {
      say(`cannot start: ${(err as Error).message}`);
      Deno.exit(1);
    }
  } else {
    await selfCheck(policy, {
      host: config.host,
      port: config.port,
      policyPath: policyFile.path,
      store: config.store,
      advertise: config.advertiseUrl,
      tenants: config.tenants ? { path: config.tenants, env: tokenVariables(tenants) } : undefined,
    }, ownPolicies.policies);
  }
  // Deno Deploy's app directory may be read-only: the snapshot and wheels then go to /tmp.
  const cacheDir = config.deploy ? await writableCacheDir() : CACHE_DIR;
  let store;
  try {
    store = await openStore({
      setting: config.store,
      key: config.storeKey,
      prefix: config.storePrefix,
      cacheDir,
      platformKv: config.deploy,
      log: say,
      onRejected: (err) =>
        logSecurity("checkpoint-rejected", { record: err.record, reason: err.reason }),
    });
  } catch (err) {
    say(`cannot start: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const storeLine = describeStore(config.store, cacheDir, config.storePrefix, config.deploy);
  // Said on its own line only when it needs acting on; otherwise the ready line names it.
  await store.ping().catch((err) => say(`${storeLine} (not reachable now: ${err.message})`));
  const snapshot = await loadSnapshot(say, cacheDir === CACHE_DIR ? undefined : cacheDir);
  // The server's policy, then each tenant policy: its own pool, base, packages, network, tools.
  const scopeOptions = {
    snapshot: snapshot.bytes,
    cacheDir,
    pyodideDir: PYODIDE_DIR,
    durable: store.kind !== "memory",
    log: say,
  };
  let serverScope: Scope;
  const tenantScopes = new TenantScopeMap();
  try {
    serverScope = await buildScope(policyFile.path, policy, scopeOptions);
    for (const own of ownPolicies.policies) {
      const scope = await buildScope(own.path, own.policy, scopeOptions).catch((err) => {
        throw new Error(`tenant policy ${own.path}: ${(err as Error).message}`);
      });
      tenantScopes.add(scope);
    }
    tenantScopes.assign(tenants, ownPolicies.byTenant);
  } catch (err) {
    say(`cannot start: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const pool = serverScope.pool;
  const checkpoints = serverScope.base && new Checkpoints({
    store,
    instanceId: config.instanceId,
    limits: policy.limits,
    base: serverScope.base,
    log: say,
    keepLeases: config.advertiseUrl !== undefined,
  });
  for (const scope of tenantScopes.all()) if (scope.base) await checkpoints?.addBase(scope.base);
  const codeMode = serverScope.codeMode;
  const sessions = new SessionManager({
    ...serverScope,
    onCall: callLogger(policy.audit),
    log: say,
    instanceId: config.instanceId,
    checkpoints,
    onToolCall: (source, outcome) => metrics.toolCalls.inc({ source, outcome }),
    quotas,
    tenantScopes,
  });
  const stored = await sessions.loadStored().catch((err) => {
    say(
      `could not list the sessions in the store (${err.message}); each restores on its first call`,
    );
    return 0;
  });
  if (stored) say(`${stored} sessions in the store, each restored on its first call`);
  metrics.observe({
    poolReady: () => tenantScopes.all().reduce((n, s) => n + s.pool.ready, pool.ready),
    sessions: () => sessions.counts(),
  });
  if (STDIO) {
    const stdio = await serveStdio({
      sessions,
      policy,
      returnMode: config.mcpReturnMode,
      codeMode,
    });
    const ms = Math.round(performance.now() - started);
    say(`ready as a stdio MCP server in ${ms} ms (${storeLine})`);
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => void stdio.stop());
    }
    await stdio.done;
    await sessions.shutdown(SHUTDOWN_GRACE_MS);
    Deno.exit(0);
  }
  // Other instances on the store: heartbeats, and calls passed to the instance running the session.
  // Not on Deno Deploy: its instances cannot reach each other, and a heartbeat a second would be
  // a KV write a second, billed, per instance.
  const cluster = checkpoints && !config.deploy
    ? await startCluster({
      store,
      secret: config.storeKey ?? await storeSecret(undefined, `${cacheDir}store.key`),
      instanceId: config.instanceId,
      advertiseUrl: config.advertiseUrl,
      holds: (id) => checkpoints.holds(id),
      onLapse: () => checkpoints.forgetLeases(),
      leaseTtlMs: LEASE_TTL_MS,
      storeLine,
      log: say,
    })
    : undefined;
  const mcp = new McpHttp({
    sessions,
    policy,
    returnMode: config.mcpReturnMode,
    instanceId: config.instanceId,
    codeMode,
    tenantScope: (tenant) => tenantScopes.of(tenant),
  });
  // SIGHUP reads the tenants file again: a tenant removed is cut off at once, sessions stay.
  if (config.tenants && !STDIO) {
    const path = config.tenants;
    Deno.addSignalListener("SIGHUP", async () => {
      try {
        const next = await loadTenants(path);
        const { byTenant } = await tenantPolicies(next, policyFile.path);
        tenantScopes.check(next, byTenant);
        tokens.replace(next);
        tenantScopes.assign(next, byTenant);
        quotas.replace(next);
        say(`tenants reloaded from ${path}: ${next.map((t) => t.name).join(", ")}`);
      } catch (err) {
        say(`tenants not reloaded (the previous list stays): ${(err as Error).message}`);
      }
    });
  }
  const app = createApp({
    token: config.token,
    tokens,
    metricsToken: config.metricsToken,
    policy,
    sessions,
    metrics,
    mcp,
    cluster,
    health: () => {
      const stuck = stuckWorkers();
      return {
        poolReady: pool.ready,
        sessions: sessions.list().length,
        ...(stuck ? { stuckWorkers: stuck } : {}),
      };
    },
    ready: readiness({
      pool: () => ({ ready: pool.ready, size: policy.limits.poolSize }),
      ping: () => store.ping(),
      instance: config.instanceId,
    }),
  });

  const server = Deno.serve({
    // Deploy mode without MOAT_HOST/MOAT_PORT: Deno's defaults (or PORT), where the platform
    // routes traffic.
    ...(config.host === undefined ? {} : { hostname: config.host }),
    ...(config.port === undefined ? {} : { port: config.port }),
    onListen: ({ hostname, port }) => {
      const ms = Math.round(performance.now() - started);
      if (config.tokenGenerated) say(`MOAT_TOKEN was not set; this run's token is ${config.token}`);
      const policyName = policyFile.path.split("/").pop();
      const snapshotFrom = snapshot.cached ? "from cache" : "made now";
      say(
        `ready at http://${hostname}:${port}/ in ${ms} ms ` +
          `(${
            config.deploy ? "deploy mode, " : ""
          }policy ${policyName}, ${storeLine}, snapshot ${snapshotFrom}, ` +
          `${pool.ready} interpreters warm, instance ${config.instanceId})`,
      );
      logEvent("start", {
        mode: config.deploy ? "deploy mode" : "local",
        policy: policyName,
        snapshot: snapshotFrom,
        ms,
        ...(config.deploy ? { workers: "narrowed permissions checked" } : {}),
      });
    },
  }, app.fetch);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const grace = config.deploy ? DEPLOY_SHUTDOWN_GRACE_MS : SHUTDOWN_GRACE_MS;
    say(`${signal}: finishing running calls and checkpointing (up to ${grace} ms), then stopping`);
    await sessions.shutdown(grace);
    await cluster?.stop();
    await mcp.close();
    await Promise.all([serverScope, ...tenantScopes.all()].map((s) => s.close()));
    await server.shutdown();
    await store.close();
    say("stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
}

await main();
