/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * The deploy-mode start-up probe (src/deploy/check.ts): a worker created with exactly the
 * permissions an interpreter gets, which answers what Deno says it holds for each descriptor the
 * host sends, and whether strings still compile as code here once the worker's guard is in.
 * It runs no Python and imports only the guard every interpreter imports first.
 */
import { codeFromStrings } from "./no_codegen.ts";

self.onmessage = async (e: MessageEvent<{ probes: Deno.PermissionDescriptor[] }>) => {
  const states: string[] = [];
  for (const probe of e.data.probes) {
    try {
      states.push((await Deno.permissions.query(probe)).state);
    } catch (err) {
      states.push(`error: ${(err as Error).message}`);
    }
  }
  self.postMessage({ states, codeFromStrings: codeFromStrings() });
};
