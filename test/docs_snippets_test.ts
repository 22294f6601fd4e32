/**
 * Every shell and Python snippet in README.md, docs/ and the client's README runs as pasted
 * against a real server, so the docs cannot drift from what Moat does.
 *
 * The convention for writers: a fenced `sh` or `python` block runs; an HTML comment on the line
 * before it says otherwise, `<!-- snippet: skip REASON -->` (never run: a file, a command that
 * starts a server, a download) or `<!-- snippet: needs python:MODULE -->` /
 * `<!-- snippet: needs COMMAND -->` (run where that module or command exists, else reported as
 * ignored with the reason). A page's shell blocks run in order in one shell (`set -e`), as a reader
 * pastes them into one terminal, with `MOAT_TOKEN` exported and curl failing on an HTTP error; each
 * Python block runs on its own. `http://127.0.0.1:8000` is the test server's address. A
 * `# {"result":X` comment under a curl and a `# N` comment after a `print(...)` of a number are
 * checked against the output.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";
import { docPages } from "./helpers/docs.ts";

const ROOT = new URL("../", import.meta.url).pathname;

interface Snippet {
  page: string;
  line: number;
  lang: "sh" | "python";
  code: string;
  /** Why it does not run, or what it needs to run. */
  skip?: string;
  needs?: string;
}

/** The runnable blocks of one page, with the directive on the line before each. */
export function snippets(page: string, markdown: string): Snippet[] {
  const lines = markdown.split("\n");
  const found: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^(\s*)```(\w+)\s*$/);
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && l.trim() === "```");
    const lang = open[2];
    const body = lines.slice(i + 1, end).map((l) => l.slice(open[1].length)).join("\n");
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === "") before--;
    const directive = lines[before]?.match(/<!--\s*snippet:\s*(skip|needs)\s+(.*?)\s*-->/);
    if (lang === "sh" || lang === "bash" || lang === "python") {
      found.push({
        page,
        line: i + 1,
        lang: lang === "python" ? "python" : "sh",
        code: body,
        skip: directive?.[1] === "skip" ? directive[2] : undefined,
        needs: directive?.[1] === "needs" ? directive[2] : undefined,
      });
    }
    i = end;
  }
  return found;
}

/** Why a `needs` directive cannot be met here, or undefined when it can. */
async function unmet(needs: string): Promise<string | undefined> {
  const module = needs.match(/^python:([\w.]+)/)?.[1];
  const check = module
    ? ["python3", ["-c", `import ${module}`]] as const
    : ["sh", ["-c", `command -v ${needs.split(/\s/)[0]}`]] as const;
  const out = await new Deno.Command(check[0], {
    args: [...check[1]],
    stdout: "null",
    stderr: "null",
  })
    .output();
  return out.success ? undefined : `needs ${needs}: not available here`;
}

/** A scratch directory that looks like a checkout, so that files a snippet writes stay out of it. */
async function scratch(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "moat-snippets-" });
  for (
    const name of [
      "clients",
      "scripts",
      "policies",
      "src",
      "main.ts",
      "deno.json",
      "deno.lock",
      "node_modules",
      ".moat-cache",
    ]
  ) {
    await Deno.symlink(`${ROOT}${name}`, `${dir}/${name}`).catch(() => {});
  }
  // curl answers an HTTP error with a failing exit status, as `set -e` needs to notice it.
  await Deno.mkdir(`${dir}/.bin`);
  await Deno.writeTextFile(
    `${dir}/.bin/curl`,
    `#!/bin/sh\ncurl=$(PATH=${Deno.env.get("PATH")} command -v curl)\n` +
      // A snippet's own -f (as in a readiness loop) stays; curl refuses both together.
      `for a in "$@"; do case "$a" in --fail|-[!-]*f*) exec "$curl" "$@";; esac; done\n` +
      `exec "$curl" --fail-with-body "$@"\n`,
  );
  await Deno.chmod(`${dir}/.bin/curl`, 0o755);
  return dir;
}

/** What the snippet's own comments say its output holds. */
function expectations(s: Snippet): string[] {
  const wanted: string[] = [];
  for (const m of s.code.matchAll(/# \{"result":([^,}]+)/g)) wanted.push(`"result":${m[1]}`);
  for (const m of s.code.matchAll(/print\(.*\)\s+#\s+(-?\d+)\s*$/gm)) wanted.push(m[1]);
  return wanted;
}

async function run(
  argv: string[],
  cwd: string,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ code: number; output: string }> {
  // setsid: the snippet and whatever it starts in the background form one group, stopped at the end.
  const child = new Deno.Command("setsid", {
    args: argv,
    cwd,
    env,
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const timer = setTimeout(() => kill(child.pid), timeoutMs);
  const output = child.output();
  // Once the snippet's shell is done (or killed), what it left in the background goes too: a
  // server started with `&` holds the output pipes open, and the output would never end.
  await child.status;
  clearTimeout(timer);
  kill(child.pid);
  await sweep();
  const out = await output;
  const text = new TextDecoder();
  return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr) };
}

/** Marks every process a snippet starts, so that none outlives the test (see `sweep`). */
const MARK = `MOAT_SNIPPET_RUN=${crypto.randomUUID()}`;

function kill(pid: number): void {
  try {
    Deno.kill(-pid, "SIGKILL");
  } catch { /* already gone */ }
}

/** Stops what a snippet left running in a process group of its own (a server started with `&`). */
async function sweep(): Promise<void> {
  // /proc/*/environ holds MARK for every process started under a snippet (grep: Deno reads /proc
  // only with --allow-all).
  const out = await new Deno.Command("sh", {
    args: ["-c", `grep -lsxzF '${MARK}' /proc/[0-9]*/environ; true`],
    stdout: "piped",
  }).output();
  for (const m of new TextDecoder().decode(out.stdout).matchAll(/\/proc\/(\d+)\//g)) {
    try {
      Deno.kill(Number(m[1]), "SIGKILL");
    } catch { /* gone */ }
  }
}

const pages = await docPages();
const all = (await Promise.all(
  pages.map(async (p) => snippets(p, await Deno.readTextFile(`${ROOT}${p}`))),
)).flat();

Deno.test("the docs hold runnable snippets, and every skip says why", () => {
  assert.ok(all.filter((s) => !s.skip && !s.needs).length >= 10, "too few snippets run");
  for (const s of all) {
    if (s.skip !== undefined) {
      assert.ok(s.skip.length > 5, `${s.page}:${s.line}: a skip needs a reason`);
    }
  }
});

Deno.test({
  name: "every shell and Python snippet in README.md and docs/ runs as pasted",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using server = await startServer({
    env: { MOAT_METRICS_TOKEN: "metrics-token-0123456789" },
  });
  const cwd = await scratch();
  const env = {
    PATH: `${cwd}/.bin:${Deno.env.get("PATH")}`,
    HOME: Deno.env.get("HOME") ?? cwd,
    MOAT_TOKEN: server.token,
    MOAT_METRICS_TOKEN: "metrics-token-0123456789",
    PYTHONPATH: `${ROOT}clients/python/src`,
    NO_COLOR: "1",
    [MARK.split("=")[0]]: MARK.split("=")[1],
  };
  const local = (code: string) => code.replaceAll("http://127.0.0.1:8000", server.url);
  for (const page of pages) {
    const blocks = all.filter((s) => s.page === page && s.skip === undefined);
    const runnable: Snippet[] = [];
    for (const s of blocks) {
      const why = s.needs ? await unmet(s.needs) : undefined;
      if (why) {
        await t.step({ name: `${page}:${s.line} (${why})`, ignore: true, fn: () => {} });
      } else runnable.push(s);
    }
    const shell = runnable.filter((s) => s.lang === "sh");
    if (shell.length) {
      await t.step(
        `${page}: shell snippets (lines ${shell.map((s) => s.line).join(", ")})`,
        async () => {
          // set -m: background jobs are process groups, as in the reader's terminal (`kill %1`).
          const script = ["set -meuo pipefail"];
          for (const s of shell) script.push(`echo "--- ${page}:${s.line}" >&2`, local(s.code));
          const { code, output } = await run(["bash", "-c", script.join("\n")], cwd, env, 400_000);
          assert.equal(code, 0, `exit ${code}:\n${output}`);
          for (const want of shell.flatMap(expectations)) {
            assert.ok(output.includes(want), `output lacks ${want}:\n${output}`);
          }
        },
      );
    }
    for (const s of runnable.filter((s) => s.lang === "python")) {
      await t.step(`${page}:${s.line}: Python snippet`, async () => {
        const { code, output } = await run(["python3", "-c", local(s.code)], cwd, env, 120_000);
        assert.equal(code, 0, `exit ${code}:\n${output}`);
        for (const want of expectations(s)) {
          assert.ok(output.includes(want), `output lacks ${want}:\n${output}`);
        }
      });
    }
  }
  await Deno.remove(cwd, { recursive: true });
});
