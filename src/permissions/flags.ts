/**
 * The Deno permissions a policy needs, and the `deno run` flags that grant exactly those.
 * `deno task start`, `scripts/flags.ts`, the start-up self-check and the tests all derive them
 * here, so the flags can never drift wider than the policy.
 */
import { DOCS_ASSET_FILES } from "../http/docs_assets.ts";
import { PYODIDE_CDN } from "../packages/source.ts";
import {
  CACHE_DIR,
  CODEC_DIR,
  POLICY_DIR,
  PYODIDE_DIR,
  ROOT,
  STORE_DIR,
  WORKER_DIR,
} from "../paths.ts";
import { allowedHosts, type Policy } from "../policy/schema.ts";
import type { StoreSetting } from "../store/setting.ts";
import { envNames, networkEnvNames, upstreamHosts } from "../tools/grants.ts";

/**
 * Variables the server reads: its settings, deploy mode's two, the two the `yaml` package looks up, and the two
 * debugging switches the Redis client (`@redis/client`) looks up on every command.
 */
export const ENV_NAMES = [
  "MOAT_HOST",
  "MOAT_PORT",
  "MOAT_TOKEN",
  "MOAT_POLICY",
  "MOAT_METRICS_TOKEN",
  "MOAT_STORE",
  "MOAT_STORE_KEY",
  "MOAT_STORE_PREFIX",
  "MOAT_INSTANCE_ID",
  "MOAT_ADVERTISE_URL",
  "MOAT_ALLOW_BROAD_PERMISSIONS",
  "MOAT_MCP_RETURN_MODE",
  "MOAT_TENANTS",
  // Deploy mode's switch (set by Deno Deploy) and the port it may name (src/config.ts).
  "DENO_DEPLOY",
  "PORT",
  "LOG_TOKENS",
  "LOG_STREAM",
  "REDIS_DEBUG_MAINTENANCE",
  "REDIS_EMIT_DIAGNOSTICS",
] as const;

/** Code generation from strings stays off in every isolate, so `Function(...)` escapes throw. */
export const V8_FLAGS = "--v8-flags=--disallow-code-generation-from-strings";

/**
 * Sessions (memory, not security): V8 lets each isolate's young generation grow its semi-spaces
 * to 16 MiB and an idle worker keeps what its boot grew to; 1 MiB semi-spaces save about 7 MB per
 * interpreter, for scavenges a little more often. `gc` lets a worker collect its boot garbage
 * (the 10 MB wasm binary Pyodide read) once before it idles; the worker takes `gc` off its
 * global object before any other code runs there.
 */
export const MEMORY_V8_FLAGS = "--v8-flags=--max-semi-space-size=1,--expose-gc";

/**
 * The one system call the server may make: interpreters' workers lower their own thread's
 * priority below the main thread's (src/worker/priority.ts); they revoke it at boot.
 */
export const SYS_FLAG = "--allow-sys=setPriority";

/** What the server process may touch; everything else stays denied. */
export interface Grants {
  /** Absolute paths readable: Pyodide, the runner, the policies, the cache, the mounts. */
  read: string[];
  /** Absolute paths writable: only the cache. */
  write: string[];
  /** `host` or `host:port`: the listen address, the policy's network.allow, package indexes. */
  net: string[];
  env: string[];
}

/** Where the server listens, and which policy file it reads. */
export interface Where {
  /** `MOAT_HOST`. @default {"127.0.0.1"} */
  host?: string;
  /** `MOAT_PORT`; 0 (any port) grants the host on every port. @default {8000} */
  port?: number;
  /** Absolute path of the policy file. */
  policyPath?: string;
  /** `MOAT_STORE`: its KV file (the default one lies in the cache) or its Redis host. */
  store?: StoreSetting;
  /** `MOAT_ADVERTISE_URL`: the other instances are reached beside it (`peerGrants`). */
  advertise?: string;
  /** `MOAT_TENANTS`: its file (read, also on SIGHUP) and the variables its tokens name. */
  tenants?: { path: string; env: string[] };
}

/**
 * Where the other instances of a deployment may be, from this one's advertised address: its host
 * on any port (several instances on one machine or one IP), and for a name, every name beside it
 * on its port (`moat-1.moat.ns.svc.cluster.local` grants `*.moat.ns.svc.cluster.local:8000`, the
 * pods of a StatefulSet). Deno's --allow-net has no address ranges, so peers reached by other IP
 * addresses need names (docs/scaling.md).
 */
export function peerGrants(advertise: string): string[] {
  const url = new URL(advertise);
  const host = url.hostname;
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const ip = /^[\d.]+$/.test(host) || host.startsWith("[");
  const parent = host.split(".").slice(1).join(".");
  return ip || !parent.includes(".") ? [host] : [host, `*.${parent}:${port}`];
}

function isUrl(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
}

/** Relative paths in a policy are taken from the Moat directory, where `deno task start` runs. */
export function absolute(path: string): string {
  const url = new URL(path.replace(/\/+$/, "") || "/", `file://${ROOT}`);
  return decodeURIComponent(url.pathname).replace(/(.)\/$/, "$1");
}

function noSlash(dir: string): string {
  return dir.replace(/\/$/, "");
}

/** `path` equals `dir` or lies under it. */
export function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** A package index is a URL (net) or a local directory (read). */
function indexGrant(index: string | undefined, read: string[], net: string[]): void {
  if (!index) return;
  if (isUrl(index)) net.push(new URL(index).host);
  else read.push(absolute(index));
}

/** The permissions one policy needs; nothing more. */
export function grantsFor(policy: Policy, where: Where = {}): Grants {
  const read = [
    noSlash(PYODIDE_DIR),
    noSlash(WORKER_DIR),
    // The sealing worker's modules: a worker is started from files its parent may read.
    noSlash(CODEC_DIR),
    // The store's worker's modules (Deno KV runs there: src/store/thread.ts).
    noSlash(STORE_DIR),
    noSlash(CACHE_DIR),
    POLICY_DIR,
    ...DOCS_ASSET_FILES,
  ];
  if (where.policyPath && !within(where.policyPath, POLICY_DIR)) read.push(where.policyPath);
  for (const mount of policy.mounts) read.push(absolute(mount.host));
  const host = where.host ?? "127.0.0.1";
  const port = where.port ?? 8000;
  const net = [port === 0 ? host : `${host}:${port}`, ...allowedHosts(policy)];
  // Without an index, wheels come from Pyodide's CDN (src/packages/source.ts).
  indexGrant(policy.packages.index ?? PYODIDE_CDN, read, net);
  indexGrant(policy.packages.pypi ?? undefined, read, net);
  const write = [noSlash(CACHE_DIR)];
  const store = where.store;
  if (store?.kind === "kv" && store.path && !within(store.path, write[0])) {
    read.push(store.path);
    write.push(store.path);
  }
  if (store?.kind === "redis") net.push(store.host);
  if (where.advertise) net.push(...peerGrants(where.advertise));
  if (where.tenants) read.push(absolute(where.tenants.path));
  // Code mode's upstream MCP servers: the host calls them, with headers read from these names.
  net.push(...upstreamHosts(policy.tools.mcp));
  return {
    read: [...new Set(read)],
    write,
    net: [...new Set(net)],
    env: [
      ...new Set([
        ...ENV_NAMES,
        ...envNames(policy.tools.mcp),
        ...networkEnvNames(policy),
        ...(where.tenants?.env ?? []),
      ]),
    ],
  };
}

/**
 * The permissions the server's policy and the tenants' own policies (`MOAT_TENANTS`) need
 * together: each tenant policy's hosts, indexes, mounts and variables, and its file to read.
 */
export function grantsForAll(
  policy: Policy,
  where: Where,
  tenantPolicies: { path: string; policy: Policy }[] = [],
): Grants {
  const all = [
    grantsFor(policy, where),
    ...tenantPolicies.map((t) => grantsFor(t.policy, { ...where, policyPath: t.path })),
  ];
  const union = (key: keyof Grants) => [...new Set(all.flatMap((g) => g[key]))];
  return { read: union("read"), write: union("write"), net: union("net"), env: union("env") };
}

/** The `deno run` flags (before `main.ts`) that grant exactly `grants`. */
export function flagsFor(grants: Grants): string[] {
  const list = (flag: string, items: string[]) =>
    items.length ? [`${flag}=${items.join(",")}`] : [];
  return [
    "--no-prompt",
    V8_FLAGS,
    MEMORY_V8_FLAGS,
    SYS_FLAG,
    ...list("--allow-read", grants.read),
    ...list("--allow-write", grants.write),
    ...list("--allow-net", grants.net),
    ...list("--allow-env", grants.env),
  ];
}

/**
 * Flags that let `main.ts` start only far enough to report why the policy or settings cannot be
 * used: read the policy file and the settings, nothing else.
 */
export function bootstrapFlags(
  policyPath: string | undefined,
  tenantsPath?: string,
  tenantPolicies: string[] = [],
): string[] {
  const read = [
    POLICY_DIR,
    ...(policyPath ? [policyPath] : []),
    ...(tenantsPath ? [absolute(tenantsPath)] : []),
    ...tenantPolicies,
  ];
  return [
    "--no-prompt",
    V8_FLAGS,
    `--allow-read=${read.join(",")}`,
    `--allow-env=${ENV_NAMES.join(",")}`,
  ];
}
