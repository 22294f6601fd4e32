/**
 * Builds a local package mirror for air-gapped Moat servers: the wheels of the named packages and
 * of everything they depend on (from Pyodide's lock file), plus a `pyodide-lock.json` listing
 * them. Run it where the network exists, copy the directory, and point `packages.index` at it.
 *
 *   npx --yes deno@2.9.6 run --allow-read --allow-write --allow-net=cdn.jsdelivr.net \
 *     scripts/mirror_packages.ts [--from URL|DIR] [--out DIR] NAME...
 *
 * NAME is a distribution or import name (`pillow` or `PIL`). `--from` defaults to Pyodide's CDN
 * for the pinned version (with the lock file shipped in node_modules/pyodide); another source
 * must hold its own `pyodide-lock.json`. `--out` defaults to `./mirror`. Running it again adds to
 * the mirror and skips wheels that are already there and intact.
 */
import { sha256Hex } from "../src/digest.ts";
import {
  type LockFile,
  LockIndex,
  type LockPackage,
  parseLockFile,
} from "../src/packages/lockfile.ts";
import { classifyRequested } from "../src/packages/names.ts";
import { IndexLocation, PYODIDE_CDN } from "../src/packages/source.ts";

const PYODIDE_LOCK = new URL("../node_modules/pyodide/pyodide-lock.json", import.meta.url);

/** What one run did. */
export interface MirrorSummary {
  copied: string[];
  kept: string[];
}

/** Copies `names` and their dependencies from `from` into the directory `out`. */
export async function mirrorPackages(
  names: string[],
  options: { from?: string; out: string; log?: (line: string) => void },
): Promise<MirrorSummary> {
  const log = options.log ?? (() => {});
  const from = options.from ?? PYODIDE_CDN;
  const source = IndexLocation.parse(from);
  const lockText = from === PYODIDE_CDN
    ? await Deno.readTextFile(PYODIDE_LOCK)
    : new TextDecoder().decode(await source.read("pyodide-lock.json"));
  const lock = new LockIndex(parseLockFile(lockText, `the lock file of ${source}`));

  const wanted: string[] = [];
  for (const item of classifyRequested(names)) {
    if (item.kind === "skip") {
      log(`skipping ${item.entry}: ${item.reason}`);
      continue;
    }
    if (item.kind === "refuse") throw new Error(`${item.entry}: ${item.reason}`);
    const key = lock.find(item.name);
    if (!key) throw new Error(`${item.name}: no such package in the lock file of ${source}`);
    const { order, missing } = lock.closure(key);
    if (missing.length) throw new Error(`${key} needs ${missing.join(", ")}, not in the lock file`);
    for (const k of order) if (!wanted.includes(k)) wanted.push(k);
  }

  await Deno.mkdir(options.out, { recursive: true });
  const outLockPath = `${options.out}/pyodide-lock.json`;
  let outLock: LockFile = { info: lock.lock.info, packages: {} };
  try {
    outLock = parseLockFile(await Deno.readTextFile(outLockPath), outLockPath);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }

  const summary: MirrorSummary = { copied: [], kept: [] };
  for (const key of wanted) {
    const pkg = lock.get(key)!;
    const target = `${options.out}/${pkg.file_name}`;
    if (await intact(target, pkg)) {
      summary.kept.push(key);
      log(`${key} ${pkg.version}: already in the mirror`);
    } else {
      const bytes = await source.read(pkg.file_name);
      const sha = await sha256Hex(bytes);
      if (sha !== pkg.sha256.toLowerCase()) {
        throw new Error(
          `${pkg.file_name} from ${source} has sha256 ${sha}, the lock says ${pkg.sha256}`,
        );
      }
      await Deno.writeFile(`${target}.part`, bytes);
      await Deno.rename(`${target}.part`, target);
      summary.copied.push(key);
      log(`${key} ${pkg.version}: copied (${bytes.length} bytes)`);
    }
    outLock.packages[key] = pkg;
  }
  outLock.info = lock.lock.info;
  await Deno.writeTextFile(outLockPath, JSON.stringify(outLock, null, 2) + "\n");
  return summary;
}

async function intact(path: string, pkg: LockPackage): Promise<boolean> {
  try {
    return await sha256Hex(await Deno.readFile(path)) === pkg.sha256.toLowerCase();
  } catch {
    return false;
  }
}

/** `--from X`, `--from=X`, `--out X`, `--help`, and names. */
function parseArgs(
  argv: string[],
): { from?: string; out?: string; help: boolean; names: string[] } {
  const parsed: { from?: string; out?: string; help: boolean; names: string[] } = {
    help: false,
    names: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === "--help" || flag === "-h") parsed.help = true;
    else if (flag === "--from" || flag === "--out") {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
      parsed[flag === "--from" ? "from" : "out"] = value;
    } else if (flag.startsWith("-")) throw new Error(`unknown option ${flag}`);
    else parsed.names.push(argv[i]);
  }
  return parsed;
}

if (import.meta.main) {
  const usage = "usage: scripts/mirror_packages.ts [--from URL|DIR] [--out DIR] NAME...\n" +
    "copies the named packages and their dependencies into a mirror for packages.index";
  let args;
  try {
    args = parseArgs(Deno.args);
  } catch (err) {
    console.error(`mirror_packages: ${(err as Error).message}\n${usage}`);
    Deno.exit(2);
  }
  if (args.help || args.names.length === 0) {
    console.error(usage);
    Deno.exit(args.help ? 0 : 2);
  }
  const out = args.out ?? "mirror";
  try {
    const summary = await mirrorPackages(args.names, {
      from: args.from,
      out,
      log: (line) => console.log(line),
    });
    console.log(
      `mirror ${out}: ${summary.copied.length} copied, ${summary.kept.length} already there; ` +
        `set packages.index: ${out} in the policy`,
    );
  } catch (err) {
    console.error(`mirror_packages: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
