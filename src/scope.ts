/**
 * A scope: one policy and what its sessions run with, built from it: warm interpreters (with its
 * preload, mounts and memory), the delta base its checkpoints name, the package loader, outbound
 * HTTP and code mode's upstream servers. The server's policy has one; each distinct tenant policy
 * (`MOAT_TENANTS`) its own, so a tenant's sessions get its limits, packages, network and tools.
 */
import { metrics } from "./metrics.ts";
import { Outbound } from "./outbound/outbound.ts";
import { rulesFor } from "./outbound/rules.ts";
import { PackageLoader } from "./packages/loader.ts";
import { fetchPreload } from "./packages/preload.ts";
import { allowedHosts, type Policy } from "./policy/schema.ts";
import { loadDeltaBase } from "./sandbox/delta_base.ts";
import type { Interpreter } from "./sandbox/interpreter.ts";
import { readMounts } from "./sandbox/mounts.ts";
import { Pool } from "./sandbox/pool.ts";
import type { Loaded } from "./session/checkpoints.ts";
import { Upstreams } from "./tools/upstreams.ts";

/** What the sessions of one policy run with. */
export interface Scope {
  /** The policy file's path, naming the scope in messages. */
  name: string;
  policy: Policy;
  pool: Pool;
  /** Resolves and fetches the packages calls ask for; calls load nothing without it. */
  loader?: PackageLoader;
  /** Sends Python's HTTP requests (`network.allow`); absent: no host allowed. */
  outbound?: Outbound;
  /** Code mode: the policy's upstream MCP servers. */
  upstream?: Upstreams;
  /** Code mode's modules, for `run_python_code`'s description; absent without upstreams. */
  codeMode?: () => string;
  /** The image this scope's checkpoints are deltas against; absent without a durable store. */
  base?: Uint8Array;
  /** Boots an interpreter of this scope from a checkpoint (which names its own base). */
  restore(loaded: Loaded): Promise<Interpreter>;
  /** Stops the pool and the upstream connections. */
  close(): Promise<void>;
}

/** What building a scope needs besides its policy. */
export interface ScopeOptions {
  /** The boot snapshot, the same for every policy. */
  snapshot: Uint8Array;
  /** Where wheels and delta bases are cached. */
  cacheDir: string;
  pyodideDir: string;
  /** Checkpoints are on (a store other than memory): the scope gets a delta base. */
  durable: boolean;
  log: (line: string) => void;
}

/**
 * Builds the scope of `policy` (from `path`) and warms its pool; throws with a message for the
 * operator when a mount, the package index or a header's variable cannot be had.
 */
export async function buildScope(path: string, policy: Policy, o: ScopeOptions): Promise<Scope> {
  const { limits } = policy;
  const mounts = await readMounts(policy.mounts, limits.memoryMb * 1024 * 1024 / 2);
  const loader = await PackageLoader.create(policy.packages, {
    pyodideDir: o.pyodideDir,
    cacheDir: `${o.cacheDir}packages/`,
    log: o.log,
  });
  const preload = await fetchPreload(loader, o.log);
  // Outbound HTTP: the host sends Python's requests; its headers' variables are read now.
  const outbound = policy.network.allow.length
    ? new Outbound(rulesFor(policy), {
      maxBytes: limits.resultBytes,
      count: (host, outcome) => metrics.outbound.inc({ host, outcome }),
    })
    : undefined;
  if (outbound) metrics.outboundHosts(outbound.hosts);
  const boot = { limits, snapshot: o.snapshot, network: allowedHosts(policy), mounts };
  const fresh = { ...boot, preload: preload.wheels, preloadUnavailable: preload.unavailable };
  // Durable sessions: checkpoints are deltas against an idle session of this scope.
  const base = o.durable ? await loadDeltaBase(fresh, o.log, o.cacheDir) : undefined;
  const pool = new Pool(
    limits.poolSize,
    { ...fresh, deltaBase: base?.bytes },
    o.log,
    (ms) => metrics.boot(ms),
  );
  await pool.warm();
  let upstream: Upstreams | undefined;
  try {
    upstream = policy.tools.mcp.length ? await Upstreams.connect(policy.tools.mcp) : undefined;
  } catch (err) {
    pool.close();
    throw err;
  }
  return {
    name: path,
    policy,
    pool,
    loader,
    outbound,
    upstream,
    codeMode: upstream && (() => upstream.describe()),
    base: base?.bytes,
    // A restored checkpoint already holds its packages: no preload.
    restore: (loaded) =>
      pool.restore({
        ...boot,
        deltaBase: loaded.base,
        checkpoint: loaded.checkpoint,
        links: loaded.links,
      }),
    close: async () => {
      pool.close();
      await upstream?.close();
    },
  };
}
