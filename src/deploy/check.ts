/**
 * Deploy mode's start-up check. On Deno Deploy the process holds `--allow-all` and no flag can be
 * passed, so the usual refusal of broad permissions (src/permissions/check.ts) cannot apply.
 * What must hold instead is that no worker inherits them: every interpreter's worker is created
 * with explicit, narrowed `deno.permissions` (src/sandbox/worker_permissions.ts), which needs
 * Deno's `worker-options` unstable feature. This module proves it once at start-up by creating
 * one probe worker with those very options and asking it what it holds. When the feature is off
 * Deno itself stops the process (exit code 70, "Unstable API 'Worker.deno.permissions'") as soon
 * as a worker is created with the option, so no worker ever runs with inherited permissions;
 * `unstableFeatureListed` lets start-up say why before it gets there.
 */
import { PYODIDE_DIR, ROOT } from "../paths.ts";
import { workerPermissions } from "../sandbox/worker_permissions.ts";

/** The probe worker, beside the interpreter's entry so it gets the same read grant. */
export const PROBE_URL = new URL("../worker/probe.ts", import.meta.url);

/** How long the probe may take to answer before start-up gives up. */
const PROBE_TIMEOUT_MS = 30_000;

/** What a worker must never hold, whatever the process holds, and what it must hold. */
function probes(network: string[]): { probe: Deno.PermissionDescriptor; granted: boolean }[] {
  const never: Deno.PermissionDescriptor[] = [
    { name: "read", path: "/" },
    { name: "read", path: "/etc/passwd" },
    { name: "read", path: `${ROOT}main.ts` },
    { name: "read", path: `${ROOT}.moat-cache` },
    { name: "write", path: "/" },
    { name: "write", path: "/tmp" },
    { name: "write", path: PYODIDE_DIR },
    { name: "net" },
    { name: "net", host: "169.254.169.254" },
    { name: "env" },
    { name: "env", variable: "MOAT_TOKEN" },
    { name: "run" },
    { name: "ffi" },
    { name: "sys" },
    { name: "import" },
  ];
  return [
    ...never.map((probe) => ({ probe, granted: false })),
    // Positive controls: the option was applied, rather than the worker merely holding nothing.
    { probe: { name: "read", path: `${PYODIDE_DIR}pyodide.mjs` }, granted: true },
    // The policy's hosts too: the host sends Python's requests, the worker reaches none.
    ...network.map((host) => ({ probe: { name: "net", host } as const, granted: false })),
  ];
}

function describe(probe: Deno.PermissionDescriptor): string {
  const { name, ...rest } = probe as unknown as Record<string, unknown>;
  const what = Object.values(rest)[0];
  return what === undefined ? `all ${name}` : `${name} ${what}`;
}

/**
 * Whether a `deno.json` text lists `worker-options` under `"unstable"` (where Deno Deploy, which
 * takes no flags, reads it). Undefined when the file cannot be parsed (Deno will then decide).
 */
export function unstableFeatureListed(configText: string): boolean | undefined {
  try {
    const config = JSON.parse(configText);
    return Array.isArray(config.unstable) && config.unstable.includes("worker-options");
  } catch {
    return undefined;
  }
}

/**
 * Creates one worker with the interpreter's permission options for a policy that lets Python
 * reach `network`, and lists every way its permissions differ from what they must be (empty:
 * narrowed as required), code generation from strings included.
 * @throws Error when the probe does not answer (it crashed, or timed out).
 */
export async function workerProblems(
  network: string[],
  /** What the probe is created with; tests pass wider options to see them reported. */
  permissions: Deno.PermissionOptions = workerPermissions(PROBE_URL),
): Promise<string[]> {
  const expected = probes(network);
  const worker = new Worker(PROBE_URL, { type: "module", deno: { permissions } });
  const answer = Promise.withResolvers<{ states: string[]; codeFromStrings: boolean }>();
  worker.onmessage = (e) => answer.resolve(e.data);
  worker.onerror = (e) => {
    e.preventDefault();
    answer.reject(new Error(`the probe worker failed: ${e.message}`));
  };
  const timer = setTimeout(
    () => answer.reject(new Error(`the probe worker did not answer in ${PROBE_TIMEOUT_MS} ms`)),
    PROBE_TIMEOUT_MS,
  );
  worker.postMessage({ probes: expected.map((e) => e.probe) });
  try {
    const { states, codeFromStrings } = await answer.promise;
    const problems: string[] = [];
    expected.forEach(({ probe, granted }, i) => {
      const state = states[i];
      if (granted && state !== "granted") {
        problems.push(`${describe(probe)} is ${state}, not granted as the options say`);
      }
      if (!granted && state === "granted") problems.push(`${describe(probe)} is granted`);
    });
    if (codeFromStrings) problems.push("code generation from strings works");
    return problems;
  } finally {
    clearTimeout(timer);
    worker.terminate();
  }
}
