import { STDLIB_MODULES } from "./stdlib.ts";

/** A distribution name as PEP 508 allows it. */
const DISTRIBUTION_NAME = /^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$/i;

/** The PEP 503 form of a distribution name: the key of Pyodide's lock file. */
export function canonicalName(name: string): string {
  return name.replace(/[-_.]+/g, "-").toLowerCase();
}

/** One entry of a call's `packages` list, classified before anything is resolved. */
export type RequestedName =
  /** Nothing to load: a standard-library module, a wildcard, a repeat. */
  | { kind: "skip"; entry: string; reason: string }
  /** Never loaded, whatever the policy says: a URL, a path, not a name at all. */
  | { kind: "refuse"; entry: string; reason: string }
  /** An import name or distribution name to look up (`PIL`, `pillow`, `scikit-learn`). */
  | { kind: "name"; entry: string; name: string };

/**
 * Classifies the entries of a `packages` list. smolagents sends its authorized imports there, so
 * entries may be module paths (`numpy.linalg`: the top-level `numpy` is what loads), stdlib
 * modules (`math`) or patterns (`numpy.*`, `*`); those never reach a package index.
 */
export function classifyRequested(entries: readonly string[]): RequestedName[] {
  const seen = new Set<string>();
  const out: RequestedName[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    const key = entry.toLowerCase();
    if (seen.has(key)) continue; // a repeat is said once, not once per copy
    seen.add(key);
    out.push(classifyOne(entry));
  }
  return out;
}

function classifyOne(entry: string): RequestedName {
  if (entry === "") return { kind: "skip", entry, reason: "empty name" };
  if (/^[a-z][a-z0-9+.-]*:/i.test(entry) || entry.includes("@")) {
    return refuse(entry, "a URL is not a package name; only the operator's indexes are used");
  }
  if (/[\\/]/.test(entry) || entry.startsWith("~") || /\.(whl|zip|tar\.gz|tgz)$/i.test(entry)) {
    return refuse(entry, "a file path is not a package name");
  }
  if (entry.includes("*")) {
    return { kind: "skip", entry, reason: "a wildcard pattern names no package to load" };
  }
  // A module path such as `numpy.linalg` or `os.path` loads through its top-level module.
  const top = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(entry)
    ? entry.split(".")[0]
    : entry;
  if (STDLIB_MODULES.has(top)) {
    return { kind: "skip", entry, reason: "part of the standard library" };
  }
  if (!DISTRIBUTION_NAME.test(top)) {
    return refuse(
      entry,
      "not a valid package name (only plain names are accepted: no versions, extras, URLs or paths)",
    );
  }
  return { kind: "name", entry, name: top };
}

function refuse(entry: string, reason: string): RequestedName {
  return { kind: "refuse", entry, reason };
}
