/**
 * The module graph as Deno loads it at run time (`deno info --json`; type-only imports are not
 * loaded, so they do not count): no cycle among `src/` modules, and a worker loads nothing from
 * outside `src/worker/`, the one directory its read grant names.
 */
import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";

const ROOT = new URL("../", import.meta.url);
const SRC = new URL("src/", ROOT).href;
const WORKER = new URL("src/worker/", ROOT).href;

interface Dependency {
  code?: { specifier: string };
}
interface Module {
  specifier: string;
  dependencies?: Dependency[];
}

/** Run-time (code) edges from every module reachable from `entry`, keyed by file URL. */
async function runtimeGraph(entry: string): Promise<Map<string, string[]>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", fromFileUrl(new URL(entry, ROOT))],
    cwd: fromFileUrl(ROOT),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const { modules } = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: Module[] };
  const graph = new Map<string, string[]>();
  for (const m of modules) {
    const code = (m.dependencies ?? []).flatMap((d) => d.code ? [d.code.specifier] : []);
    graph.set(m.specifier, code);
  }
  return graph;
}

/** Strongly connected components of more than one module (or a module importing itself). */
function cycles(graph: Map<string, string[]>, keep: (s: string) => boolean): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of (graph.get(v) ?? []).filter(keep)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component);
    }
  };
  for (const v of [...graph.keys()].filter(keep)) if (!index.has(v)) visit(v);
  return found;
}

const short = (s: string) => s.slice(new URL(ROOT).href.length);

Deno.test("no import cycle among src/ modules at run time", async () => {
  const inSrc = (s: string) => s.startsWith(SRC);
  for (const entry of ["main.ts", "src/worker/main.ts"]) {
    const found = cycles(await runtimeGraph(entry), inSrc);
    assert.deepEqual(found.map((c) => c.map(short).sort()), [], `cycles from ${entry}`);
  }
});

Deno.test("a worker loads no code from outside src/worker/ and node_modules", async () => {
  const graph = await runtimeGraph("src/worker/main.ts");
  const loaded = new Set([new URL("src/worker/main.ts", ROOT).href]);
  for (const m of loaded) for (const d of graph.get(m) ?? []) loaded.add(d);
  const outside = [...loaded].filter((s) =>
    s.startsWith("file:") && !s.startsWith(WORKER) && !s.includes("/node_modules/")
  );
  assert.deepEqual(outside.map(short), []);
});
