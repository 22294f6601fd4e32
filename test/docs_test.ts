/**
 * The docs cannot drift from the code: every relative link resolves (anchors included), every
 * `MOAT_*` setting the code reads and every policy key is in docs/configuration.md, the README
 * stays short, and each guide opens by saying what it covers.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { PolicySchema } from "../src/policy/schema.ts";
import { docPages } from "./helpers/docs.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/`/g, "").replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.trimStart().startsWith("```")) fenced = !fenced;
    const m = !fenced && line.match(/^#{1,6}\s+(.*)$/);
    if (m) found.add(slug(m[1]));
  }
  return found;
}

/** Markdown links `[text](target)` outside code blocks and code spans. */
function links(markdown: string): string[] {
  const prose = markdown.replace(/```[\s\S]*?```/g, "").replace(/`[^`\n]*`/g, "");
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
}

Deno.test("every relative link in README, SECURITY.md and docs/ resolves, anchors too", async () => {
  const broken: string[] = [];
  for (const page of await docPages()) {
    const text = await Deno.readTextFile(`${ROOT}${page}`);
    for (const target of links(text)) {
      if (/^[a-z]+:/.test(target)) continue; // http(s), mailto: not checked offline
      const [path, anchor] = target.split("#");
      const file = path === ""
        ? page
        : new URL(path, `file://${ROOT}${page}`).pathname.slice(ROOT.length);
      let content: string | undefined;
      try {
        const stat = await Deno.stat(`${ROOT}${file}`);
        if (stat.isFile) content = await Deno.readTextFile(`${ROOT}${file}`);
      } catch {
        broken.push(`${page}: ${target} (no such file)`);
        continue;
      }
      if (file.startsWith("..")) broken.push(`${page}: ${target} (outside the repository)`);
      if (anchor && content !== undefined && !anchors(content).has(anchor)) {
        broken.push(`${page}: ${target} (no heading '#${anchor}' in ${file})`);
      }
    }
  }
  assert.deepEqual(broken, [], `broken links:\n${broken.join("\n")}`);
});

/** Every `MOAT_*` name in the code under src/ and main.ts (tests and scripts excluded). */
async function settingsRead(): Promise<Set<string>> {
  const names = new Set<string>();
  const visit = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await visit(path);
      else if (/\.(ts|py)$/.test(e.name) && !e.name.endsWith("_test.ts")) {
        for (const m of (await Deno.readTextFile(path)).matchAll(/MOAT_[A-Z_]+/g)) names.add(m[0]);
      }
    }
  };
  await visit(`${ROOT}src`);
  for (const m of (await Deno.readTextFile(`${ROOT}main.ts`)).matchAll(/MOAT_[A-Z_]+/g)) {
    names.add(m[0]);
  }
  return names;
}

/** Dotted names of every key a policy file may hold (`limits.timeoutMs`, `mounts`, …). */
export function policyKeys(schema: z.ZodType = PolicySchema, prefix = ""): string[] {
  let t = schema;
  while (t instanceof z.ZodDefault || t instanceof z.ZodOptional || t instanceof z.ZodNullable) {
    t = t.unwrap() as z.ZodType;
  }
  if (!(t instanceof z.ZodObject)) return [prefix];
  return Object.entries(t.shape).flatMap(([key, value]) =>
    policyKeys(value as z.ZodType, prefix ? `${prefix}.${key}` : key)
  );
}

Deno.test("docs/configuration.md names every MOAT_* setting the code reads and every policy key", async () => {
  const reference = await Deno.readTextFile(`${ROOT}docs/configuration.md`);
  const settings = [...await settingsRead()];
  assert.ok(settings.length >= 10, `found only ${settings.join(", ")}`);
  const missing = settings.filter((name) => !reference.includes(`\`${name}\``));
  assert.deepEqual(missing, [], `settings read by the code but not documented: ${missing}`);
  const keys = policyKeys();
  assert.ok(keys.includes("limits.timeoutMs") && keys.includes("audit.logCode"), `${keys}`);
  const undocumented = keys.filter((key) => !reference.includes(`\`${key}\``));
  assert.deepEqual(undocumented, [], `policy keys not documented: ${undocumented}`);
});

Deno.test("the README reads in two minutes and each guide says first what it covers", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const lines = readme.split("\n").length;
  assert.ok(lines <= 250, `README.md has ${lines} lines; at most ~250 (move detail to docs/)`);
  assert.ok(readme.includes("npx --yes deno@2.9.6 task start"), "the start command");
  assert.ok(readme.includes("npx --yes deno@2.9.6 task test"), "the test command");
  for (const page of (await docPages()).filter((p) => p.startsWith("docs/"))) {
    const text = await Deno.readTextFile(`${ROOT}${page}`);
    assert.ok(readme.includes(`(${page})`), `README.md does not list ${page}`);
    const [title, blank, first] = text.split("\n");
    assert.match(title, /^# \S/, `${page} opens with its title`);
    assert.equal(blank, "", `${page}: a blank line after the title`);
    assert.match(first, /^This page /, `${page}: the first sentence says what it covers`);
  }
});
