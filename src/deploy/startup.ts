/**
 * What start-up does differently in deploy mode (`DENO_DEPLOY=true`): prove that workers get
 * narrowed permissions instead of refusing `--allow-all`, and find a writable directory for the
 * snapshot and the wheel cache when the app's own directory is read-only.
 */
import { CACHE_DIR, ROOT } from "../paths.ts";
import { unstableFeatureListed, workerProblems } from "./check.ts";

/** Why deploy mode cannot start; main.ts prints the message and exits 1. */
export class DeployRefused extends Error {
  override name = "DeployRefused";
}

/**
 * Refuses (throws `DeployRefused`) unless a worker created as interpreters are gets exactly its
 * narrowed permissions. Reads `deno.json` first so that a missing `worker-options` entry is
 * named before Deno itself would stop the process at the first worker (exit code 70).
 */
export async function proveWorkersNarrowed(
  network: string[],
  say: (line: string) => void,
  configPath = `${ROOT}deno.json`,
): Promise<void> {
  const config = await Deno.readTextFile(configPath).catch(() => undefined);
  if (config !== undefined && unstableFeatureListed(config) === false) {
    throw new DeployRefused(
      `deploy mode needs Deno's 'worker-options' unstable feature to give each worker narrowed ` +
        `permissions (without it a worker would inherit --allow-all): add "worker-options" to ` +
        `"unstable" in ${configPath}`,
    );
  }
  say(
    "deploy mode: checking that a worker gets its own narrowed permissions, not --allow-all " +
      "(if Deno stops here with \"Unstable API 'Worker.deno.permissions'\", the 'worker-options' " +
      "unstable feature is off)",
  );
  let problems: string[];
  try {
    problems = await workerProblems(network);
  } catch (err) {
    throw new DeployRefused(
      `deploy mode: the worker permission check failed: ${(err as Error).message}`,
    );
  }
  if (problems.length) {
    throw new DeployRefused(
      `deploy mode: a worker would not hold only its narrowed permissions (${
        problems.join("; ")
      }); ` +
        `this Deno does not apply Worker deno.permissions, so no interpreter is started`,
    );
  }
}

/**
 * The cache directory when it can be written, else `<tmp>/moat-cache/` (Deno Deploy: the app's
 * files may be read-only; each instance has a disk of its own for temporary files).
 */
export async function writableCacheDir(): Promise<string> {
  if (await canWrite(CACHE_DIR)) return CACHE_DIR;
  const tmp = (Deno.env.get("TMPDIR") || "/tmp").replace(/\/?$/, "/");
  return `${tmp}moat-cache/`;
}

async function canWrite(dir: string): Promise<boolean> {
  const probe = `${dir}.write-test-${crypto.randomUUID()}`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(probe, new Uint8Array());
    await Deno.remove(probe);
    return true;
  } catch {
    return false;
  }
}
