/**
 * `deno task compile`: one executable (`dist/moat`) holding Moat, Pyodide's files, the worker,
 * the policies and the memory snapshot, started with the policy's flags baked in.
 *
 *   deno task compile                          # dist/moat for the default policy
 *   MOAT_POLICY=strict deno task compile -- --output /usr/local/bin/moat-strict
 *
 * Inside a compiled binary the embedded files live in a read-only virtual directory,
 * `$TMPDIR/deno-compile-<binary name>/` (Deno's standalone runtime puts its root there), so the
 * read grants name that directory; the cache (snapshot, wheels, store) goes to a real directory
 * baked in as `--cache-dir` (default: `moat-cache/` beside the binary). `deno compile` needs
 * Deno's `denort` runtime for the target: it downloads it from dl.deno.land once, or takes the
 * file `DENORT_BIN` names.
 */
import { basename, dirname, relative, resolve } from "node:path";
import { readConfig } from "../src/config.ts";
import { DOCS_ASSET_FILES } from "../src/http/docs_assets.ts";
import { flagsFor, grantsFor, within } from "../src/permissions/flags.ts";
import {
  CACHE_DIR,
  CODEC_DIR,
  POLICY_DIR,
  PYODIDE_DIR,
  ROOT,
  STORE_DIR,
  WORKER_DIR,
} from "../src/paths.ts";
import { loadPolicy, resolvePolicyPath } from "../src/policy/load.ts";
import { loadSnapshot } from "../src/sandbox/snapshot.ts";

/** Parses `--output PATH` and `--cache-dir PATH` (both optional). */
function options(args: string[]): { output: string; cacheDir?: string } {
  const value = (name: string) => {
    const at = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
    if (at < 0) return undefined;
    return args[at].includes("=") ? args[at].split("=").slice(1).join("=") : args[at + 1];
  };
  return {
    output: resolve(value("--output") ?? `${ROOT}dist/moat`),
    cacheDir: value("--cache-dir"),
  };
}

/** Where a path of this checkout is inside the binary. */
function virtual(path: string, root: string): string {
  return within(path, ROOT.replace(/\/$/, "")) ? `${root}${relative(ROOT, path)}` : path;
}

/** The `deno compile` arguments for the current MOAT_* settings. */
export async function compileArgs(output: string, cacheDir?: string): Promise<string[]> {
  const get = (name: string) => Deno.env.get(name);
  const config = readConfig((name) => name === "MOAT_TOKEN" ? "x".repeat(16) : get(name));
  const policyPath = resolvePolicyPath(config.policy);
  const { policy } = await loadPolicy(policyPath);
  const tmp = (Deno.env.get("TMPDIR") || "/tmp").replace(/\/?$/, "/");
  const root = `${tmp}deno-compile-${basename(output)}/`;
  const cache = resolve(cacheDir ?? `${dirname(output)}/moat-cache`);
  const grants = grantsFor(policy, {
    host: config.host,
    port: config.port,
    policyPath,
    store: config.store,
  });
  const cacheNoSlash = CACHE_DIR.replace(/\/$/, "");
  const read = grants.read.map((p) => p === cacheNoSlash ? cache : virtual(p, root));
  // The shipped snapshot, embedded, and the policy file when it lies outside policies/.
  read.push(`${root}.moat-cache`);
  const write = grants.write.map((p) => p === cacheNoSlash ? cache : p);
  const flags = flagsFor({ ...grants, read: [...new Set(read)], write });
  const includes = [
    PYODIDE_DIR,
    WORKER_DIR,
    CODEC_DIR,
    STORE_DIR,
    POLICY_DIR,
    ...DOCS_ASSET_FILES,
    ...[...Deno.readDirSync(CACHE_DIR)]
      .filter((e) => /^snapshot-.*\.bin$/.test(e.name))
      .map((e) => `${CACHE_DIR}${e.name}`),
  ];
  if (!within(policyPath, POLICY_DIR)) includes.push(policyPath);
  return [
    "compile",
    "--unstable-worker-options",
    "--unstable-kv",
    "--unstable-no-legacy-abort",
    ...flags,
    ...includes.flatMap((path) => ["--include", path]),
    "--output",
    output,
    `${ROOT}main.ts`,
    // Baked-in arguments: the real cache directory, and the policy the flags were derived for
    // (MOAT_POLICY still wins, and the start-up check then says if the flags do not fit it).
    `--cache-dir=${cache}`,
    `--policy=${within(policyPath, POLICY_DIR) ? basename(policyPath, ".yaml") : policyPath}`,
  ];
}

if (import.meta.main) {
  const { output, cacheDir } = options(Deno.args);
  // The snapshot is made first, so the binary embeds it and boots its interpreters at once.
  await loadSnapshot((line) => console.error(`moat: ${line}`));
  const args = await compileArgs(output, cacheDir);
  console.error(`moat: deno ${args.join(" ")}`);
  const status = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT }).spawn().status;
  if (!status.success) {
    console.error(
      "moat: deno compile failed. If it could not download denort (Deno's runtime for compiled " +
        "programs, from dl.deno.land), download denort-<target>.zip for this Deno version on a " +
        "machine that can, unzip it and set DENORT_BIN=/path/to/denort.",
    );
    Deno.exit(status.code || 1);
  }
  console.error(`moat: built ${output}`);
}
