/** One way to say what a zod schema refused, wherever input is validated at the edge. */
import type { z } from "zod";

/** How the thing that holds the bad value is named: `Field 'code'`, `key 'limits.x'`, `MOAT_PORT`. */
export interface IssueWording {
  /** Put before the quoted path (`Field`, `key`); without it the path is named bare. */
  noun?: string;
  /** What to name when the issue is about the whole input. */
  whole: string;
}

/** `noun 'path' [keys]: message` for a zod issue, e.g. `key 'limits' bogus: Unrecognized key`. */
export function describeIssue(issue: z.core.$ZodIssue, wording: IssueWording): string {
  const path = issue.path.join(".");
  const keys = issue.code === "unrecognized_keys" ? ` ${issue.keys.join(", ")}` : "";
  const where = path === "" ? wording.whole : wording.noun ? `${wording.noun} '${path}'` : path;
  return `${where}${keys}: ${issue.message}`;
}
