/**
 * Real pure-Python wheels from the pip index (`requests`, `httpx` and what they import), for the
 * tests of Python's HTTP clients. `.ci/run` downloads them into `.moat-cache/pypi-wheels/`
 * (`scripts/fetch_test_wheels.sh`); a local run without them downloads them the same way, and a
 * machine with no pip index skips, saying why. They are served as a PEP 503 simple index.
 */
import { sha256Hex } from "../../src/digest.ts";
import { CACHE_DIR, ROOT } from "../../src/paths.ts";

/** Where `.ci/run` puts them. */
export const WHEELS_DIR = `${CACHE_DIR}pypi-wheels`;

/** The wheels' names; a pip index holds them all as pure-Python wheels. */
export const HTTP_WHEELS = [
  "requests",
  "urllib3",
  "idna",
  "certifi",
  "httpx",
  "httpcore",
  "h11",
  "anyio",
  "sniffio",
  "typing_extensions",
];

/** The downloaded wheels (fetching them when missing), or why there are none. */
export async function httpWheels(): Promise<{ files: string[] } | { skip: string }> {
  const list = () => {
    try {
      return [...Deno.readDirSync(WHEELS_DIR)].map((e) => e.name).filter((n) => n.endsWith(".whl"));
    } catch {
      return [];
    }
  };
  const have = (files: string[]) =>
    HTTP_WHEELS.every((name) => files.some((f) => f.toLowerCase().startsWith(`${name}-`)));
  let files = list();
  if (!have(files)) {
    const out = await new Deno.Command("bash", {
      args: [`${ROOT}scripts/fetch_test_wheels.sh`],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    files = list();
    if (!have(files)) {
      return {
        skip: `the wheels of ${HTTP_WHEELS.join(", ")} could not be downloaded: ` +
          new TextDecoder().decode(out.stderr).trim().split("\n").slice(-2).join(" "),
      };
    }
  }
  return { files: files.map((f) => `${WHEELS_DIR}/${f}`) };
}

/** Writes a PEP 503 simple index of `wheels` into `dir` (`dir/<project>/index.html`). */
export async function writeWheelIndex(dir: string, wheels: string[]): Promise<void> {
  await Deno.mkdir(`${dir}/files`, { recursive: true });
  const links = new Map<string, string[]>();
  for (const path of wheels) {
    const name = path.split("/").pop()!;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(`${dir}/files/${name}`, bytes);
    const project = name.split("-")[0].replace(/[-_.]+/g, "-").toLowerCase();
    const anchor = `<a href="../files/${name}#sha256=${await sha256Hex(bytes)}">${name}</a>`;
    links.set(project, [...(links.get(project) ?? []), anchor]);
  }
  for (const [project, anchors] of links) {
    await Deno.mkdir(`${dir}/${project}`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/${project}/index.html`,
      `<!DOCTYPE html><html><body>\n${anchors.join("<br>\n")}\n</body></html>\n`,
    );
  }
}
