/**
 * The start-up self-check: the server asks Deno which permissions it holds and refuses to run
 * with any broader than its policy needs (`-A`, a bare `--allow-read`, a write outside the
 * cache, a subprocess…), so a hand-edited command line cannot silently widen the sandbox.
 */
import { ROOT } from "../paths.ts";
import { type Grants, within } from "./flags.ts";

/** Places that must stay denied unless the policy itself names them. */
const PROBES: Deno.PermissionDescriptor[] = [
  { name: "read", path: "/" },
  { name: "read", path: "/etc/passwd" },
  { name: "read", path: "/proc/self/environ" },
  { name: "read", path: "/tmp" },
  { name: "read", path: `${ROOT}main.ts` },
  { name: "read", path: `${ROOT}.git` },
  { name: "write", path: "/" },
  { name: "write", path: "/tmp" },
  { name: "write", path: ROOT },
  { name: "write", path: `${ROOT}policies` },
  { name: "net", host: "0.0.0.0" },
  { name: "net", host: "127.0.0.2" },
  { name: "net", host: "169.254.169.254" },
  { name: "net", host: "10.0.0.1:443" },
  { name: "net", host: "example.com" },
  { name: "env", variable: "HOME" },
  { name: "env", variable: "PATH" },
  { name: "env", variable: "AWS_SECRET_ACCESS_KEY" },
  ...["sh", "bash", "/bin/sh", "deno", "node", "python3", "curl"].map((command) => ({
    name: "run" as const,
    command,
  })),
  { name: "ffi", path: "/" },
  ...(["hostname", "osRelease", "networkInterfaces", "homedir", "uid", "cpus"] as const).map((
    kind,
  ) => ({ name: "sys" as const, kind })),
];

/** Kinds the server never needs at all, and `read`/`write`/`net`/`env` without a list. */
const WHOLE: Deno.PermissionName[] = ["read", "write", "net", "env", "run", "ffi", "sys"];

function expected(probe: Deno.PermissionDescriptor, grants: Grants): boolean {
  switch (probe.name) {
    case "read":
      return grants.read.some((dir) => within(String(probe.path), dir));
    case "write":
      return grants.write.some((dir) => within(String(probe.path), dir));
    case "net":
      return grants.net.some((host) =>
        host === probe.host || host.split(":")[0] === probe.host ||
        (!host.includes(":") && host === String(probe.host).split(":")[0])
      );
    case "env":
      return grants.env.includes(String(probe.variable));
    default:
      return false;
  }
}

function describe(probe: Deno.PermissionDescriptor): string {
  const { name, ...rest } = probe as unknown as Record<string, unknown>;
  const what = Object.values(rest)[0];
  return what === undefined ? `all ${name}` : `${name} ${what}`;
}

/** Whether strings can be compiled as code in this isolate (they must not be). */
function codeGenerationAllowed(): boolean {
  try {
    const MakeFunction = globalThis.Function;
    new MakeFunction("return 1")();
    return true;
  } catch {
    return false;
  }
}

/** Lists every permission this process holds beyond `grants`; empty when it holds no more. */
export async function broaderThanNeeded(grants: Grants): Promise<string[]> {
  const problems: string[] = [];
  for (const name of WHOLE) {
    const { state } = await Deno.permissions.query({ name } as Deno.PermissionDescriptor);
    if (state === "granted") problems.push(`all ${name}`);
  }
  for (const probe of PROBES) {
    if (expected(probe, grants)) continue;
    const { state } = await Deno.permissions.query(probe);
    const text = describe(probe);
    if (state === "granted" && !problems.includes(`all ${probe.name}`)) problems.push(text);
  }
  if (codeGenerationAllowed()) {
    problems.push(
      "code generation from strings (start with --v8-flags=--disallow-code-generation-from-strings)",
    );
  }
  return problems;
}
