/**
 * Just enough of PEP 440 (versions, specifiers) and PEP 508 (requirements, markers) to choose
 * pure-Python wheels from a simple index and follow their `Requires-Dist` inside Pyodide.
 */

const VERSION = new RegExp(
  "^v?(?:(?<epoch>\\d+)!)?(?<release>\\d+(?:\\.\\d+)*)" +
    "(?:[-_.]?(?<pre>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?<preN>\\d+)?)?" +
    "(?:-(?<postN1>\\d+)|[-_.]?(?<post>post|rev|r)[-_.]?(?<postN2>\\d+)?)?" +
    "(?:[-_.]?(?<dev>dev)[-_.]?(?<devN>\\d+)?)?" +
    "(?:\\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?$",
  "i",
);
const PRE_RANK: Record<string, number> = {
  a: 0,
  alpha: 0,
  b: 1,
  beta: 1,
  c: 2,
  rc: 2,
  pre: 2,
  preview: 2,
};

/** A parsed PEP 440 version, ordered by `compareVersions`. */
export interface Version {
  epoch: number;
  release: number[];
  /** [phase, number]; undefined for a final release. */
  pre?: [number, number];
  post?: number;
  dev?: number;
}

export function parseVersion(text: string): Version | undefined {
  const g = VERSION.exec(text.trim())?.groups;
  if (!g) return undefined;
  return {
    epoch: Number(g.epoch ?? 0),
    release: g.release.split(".").map(Number),
    pre: g.pre ? [PRE_RANK[g.pre.toLowerCase()], Number(g.preN ?? 0)] : undefined,
    post: g.postN1 !== undefined ? Number(g.postN1) : g.post ? Number(g.postN2 ?? 0) : undefined,
    dev: g.dev ? Number(g.devN ?? 0) : undefined,
  };
}

export function isPrerelease(v: Version): boolean {
  return v.pre !== undefined || v.dev !== undefined;
}

export function compareVersions(a: Version, b: Version): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  const len = Math.max(a.release.length, b.release.length);
  for (let i = 0; i < len; i++) {
    const d = (a.release[i] ?? 0) - (b.release[i] ?? 0);
    if (d !== 0) return d;
  }
  // A dev release of a final version sorts before its pre-releases.
  const preKey = (v: Version) =>
    v.pre ? v.pre[0] * 1e6 + v.pre[1] : v.post === undefined && v.dev !== undefined ? -1 : 1e12;
  const d1 = preKey(a) - preKey(b);
  if (d1 !== 0) return d1;
  const d2 = (a.post ?? -1) - (b.post ?? -1);
  if (d2 !== 0) return d2;
  return (a.dev ?? Infinity) - (b.dev ?? Infinity) || 0;
}

const ORDER_HOLDS: Record<string, (c: number) => boolean> = {
  "==": (c) => c === 0,
  "!=": (c) => c !== 0,
  "<=": (c) => c <= 0,
  ">=": (c) => c >= 0,
  "<": (c) => c < 0,
  ">": (c) => c > 0,
};

/** Whether a version satisfies a specifier set such as `>=2.0,!=2.1.*,<3`. */
export function satisfies(version: string, specifiers: string): boolean {
  const v = parseVersion(version);
  if (!v) return false;
  for (const clause of specifiers.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(~=|===|==|!=|<=|>=|<|>)\s*(.+)$/.exec(clause);
    if (!m) return false;
    const [, op, target] = m;
    if (op === "===") {
      if (version !== target) return false;
      continue;
    }
    if ((op === "==" || op === "!=") && target.endsWith(".*")) {
      const prefix = parseVersion(target.slice(0, -2));
      if (!prefix) return false;
      const matches = v.epoch === prefix.epoch &&
        prefix.release.every((n, i) => (v.release[i] ?? 0) === n);
      if (matches !== (op === "==")) return false;
      continue;
    }
    const t = parseVersion(target);
    if (!t) return false;
    const c = compareVersions(v, t);
    const ok = op === "~="
      ? c >= 0 && satisfies(version, `==${t.release.slice(0, -1).join(".")}.*`)
      : ORDER_HOLDS[op](c);
    if (!ok) return false;
  }
  return true;
}

/** One `Requires-Dist` line, parsed. */
export interface Requirement {
  name: string;
  specifier: string;
  marker?: string;
  /** Set for `name @ url` requirements, which Moat does not follow. */
  url?: string;
}

export function parseRequirement(line: string): Requirement | undefined {
  const [head, ...rest] = line.split(";");
  const marker = rest.join(";").trim() || undefined;
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$/.exec(head);
  if (!m) return undefined;
  let spec = m[3].trim();
  if (spec.startsWith("@")) return { name: m[1], specifier: "", marker, url: spec.slice(1).trim() };
  if (spec.startsWith("(") && spec.endsWith(")")) spec = spec.slice(1, -1);
  return { name: m[1], specifier: spec.replace(/\s+/g, ""), marker };
}

/** The PEP 508 marker environment of Pyodide 314 (CPython 3.14 on wasm32-emscripten). */
export const PYODIDE_MARKERS: Record<string, string> = {
  python_version: "3.14",
  python_full_version: "3.14.2",
  implementation_version: "3.14.2",
  implementation_name: "cpython",
  platform_python_implementation: "CPython",
  os_name: "posix",
  sys_platform: "emscripten",
  platform_system: "Emscripten",
  platform_machine: "wasm32",
  platform_release: "",
  platform_version: "",
  extra: "",
};

const VERSION_MARKERS = new Set([
  "python_version",
  "python_full_version",
  "implementation_version",
]);

/** Evaluates a PEP 508 marker; an unreadable marker counts as false (the dependency is skipped). */
export function evaluateMarker(marker: string, env = PYODIDE_MARKERS): boolean {
  const tokens = marker.match(/"[^"]*"|'[^']*'|===|==|!=|<=|>=|~=|<|>|\(|\)|[A-Za-z_][\w.]*/g);
  if (!tokens) return false;
  let i = 0;
  const value = (t: string) => /^["']/.test(t) ? t.slice(1, -1) : env[t] ?? "";
  const compare = (left: string, op: string, right: string): boolean => {
    const l = value(left);
    const r = value(right);
    if (op === "in") return r.includes(l);
    if (op === "not in") return !r.includes(l);
    if (VERSION_MARKERS.has(left) || VERSION_MARKERS.has(right)) {
      return VERSION_MARKERS.has(left)
        ? satisfies(l, `${op}${r}`)
        : satisfies(r, `${flip(op)}${l}`);
    }
    return op === "==" || op === "===" ? l === r : op === "!=" ? l !== r : false;
  };
  const atom = (): boolean => {
    if (tokens[i] === "(") {
      i++;
      const v = or();
      i++; // ")"
      return v;
    }
    const left = tokens[i++];
    let op = tokens[i++];
    if (op === "not") op = `not ${tokens[i++]}`;
    const right = tokens[i++];
    if (left === undefined || op === undefined || right === undefined) throw new SyntaxError();
    return compare(left, op, right);
  };
  const and = (): boolean => {
    let v = atom();
    while (tokens[i] === "and") {
      i++;
      v = atom() && v;
    }
    return v;
  };
  const or = (): boolean => {
    let v = and();
    while (tokens[i] === "or") {
      i++;
      v = and() || v;
    }
    return v;
  };
  try {
    return or();
  } catch {
    return false;
  }
}

function flip(op: string): string {
  return ({ "<": ">", ">": "<", "<=": ">=", ">=": "<=" } as Record<string, string>)[op] ?? op;
}
