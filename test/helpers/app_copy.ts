/**
 * A copy of the Moat directory without its `.moat-cache/`, as Deno Deploy's build starts from a
 * fresh checkout: for tests and benchmarks that change what the app directory holds.
 */
import { ROOT } from "../../src/paths.ts";

/** What an app needs at run time (no tests, no cache). */
const PARTS = ["main.ts", "deno.json", "deno.lock", "src", "policies", "scripts", "node_modules"];

/** Copies the app into `dest` (created), symbolic links in node_modules kept as links. */
export async function copyApp(dest: string): Promise<void> {
  await Deno.mkdir(dest, { recursive: true });
  const out = await new Deno.Command("cp", {
    args: ["-a", ...PARTS.map((p) => `${ROOT}${p}`), dest],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`cp failed: ${new TextDecoder().decode(out.stderr)}`);
}
