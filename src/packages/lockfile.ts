import { z } from "zod";
import { describeIssue } from "../validation.ts";
import { canonicalName } from "./names.ts";

/** One package of a Pyodide lock file (`pyodide-lock.json`), the fields Moat uses. */
export const LockPackageSchema = z.looseObject({
  name: z.string().min(1),
  version: z.string().min(1),
  file_name: z.string().min(1),
  install_dir: z.enum(["site", "dynlib"]).default("site"),
  sha256: z.string().regex(/^[0-9a-f]{64}$/i, "must be a hex sha256"),
  package_type: z.string().default("package"),
  imports: z.array(z.string()).default([]),
  depends: z.array(z.string()).default([]),
});

/** A Pyodide lock file: the wheels built for one Pyodide version, keyed by canonical name. */
export const LockFileSchema = z.looseObject({
  info: z.looseObject({
    abi_version: z.string().optional(),
    arch: z.string().optional(),
    platform: z.string().optional(),
    python: z.string().optional(),
  }),
  packages: z.record(z.string(), LockPackageSchema),
});

export type LockPackage = z.infer<typeof LockPackageSchema>;
export type LockFile = z.infer<typeof LockFileSchema>;

/** A bad lock file; the message names the file and the field. */
export class LockFileError extends Error {
  override name = "LockFileError";
}

/** Parses lock file text; `where` names its origin in the error. */
export function parseLockFile(text: string, where: string): LockFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new LockFileError(`${where} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = LockFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = describeIssue(parsed.error.issues[0], { noun: "field", whole: "the file" });
    throw new LockFileError(`${where}: ${issue}`);
  }
  return parsed.data;
}

/** A lock file with its lookups: import name → package, and dependency closure. */
export class LockIndex {
  readonly #byImport = new Map<string, string>();

  constructor(readonly lock: LockFile) {
    for (const [key, pkg] of Object.entries(lock.packages)) {
      for (const name of pkg.imports) if (!this.#byImport.has(name)) this.#byImport.set(name, key);
    }
  }

  get(key: string): LockPackage | undefined {
    return Object.hasOwn(this.lock.packages, key) ? this.lock.packages[key] : undefined;
  }

  /** The lock key for an import name (`PIL`) or a distribution name (`Pillow`, `scikit_learn`). */
  find(name: string): string | undefined {
    const byImport = this.#byImport.get(name);
    if (byImport) return byImport;
    const key = canonicalName(name);
    return this.get(key) ? key : undefined;
  }

  /**
   * The package and everything it depends on, dependencies first, so each wheel installs after
   * the ones it imports. Names missing from the lock are returned in `missing`.
   */
  closure(key: string): { order: string[]; missing: string[] } {
    const order: string[] = [];
    const missing: string[] = [];
    const seen = new Set<string>();
    const visit = (name: string) => {
      const k = canonicalName(name);
      if (seen.has(k)) return;
      seen.add(k);
      const pkg = this.get(k);
      if (!pkg) {
        missing.push(k);
        return;
      }
      for (const dep of pkg.depends) visit(dep);
      order.push(k);
    };
    visit(key);
    return { order, missing };
  }
}
