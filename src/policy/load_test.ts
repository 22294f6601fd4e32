import assert from "node:assert/strict";
import { POLICY_DIR } from "../paths.ts";
import { loadPolicy, parsePolicy, PolicyError, policyNames } from "./load.ts";

/** The message parsePolicy refuses `text` with. */
function refusal(text: string): string {
  try {
    parsePolicy(text, "/etc/moat/p.yaml");
  } catch (err) {
    assert.ok(err instanceof PolicyError);
    return err.message;
  }
  throw new Error("the policy was accepted");
}

Deno.test("an unknown policy key is named by its full path, with the key it resembles", () => {
  assert.equal(
    refusal("limits:\n  timeoutMS: 5\n"),
    "Policy file /etc/moat/p.yaml is invalid: " +
      "unknown key 'limits.timeoutMS'; did you mean 'limits.timeoutMs'?",
  );
  assert.equal(
    refusal("limit:\n  timeoutMs: 5\n"),
    "Policy file /etc/moat/p.yaml is invalid: unknown key 'limit'; did you mean 'limits'?",
  );
  assert.equal(
    refusal("mounts:\n  - host: /data\n    at: /data\n    hots: x\n"),
    "Policy file /etc/moat/p.yaml is invalid: unknown key 'mounts[0].hots'; " +
      "did you mean 'mounts[0].host'?",
  );
});

Deno.test("an unknown key like no known one is named without a guess", () => {
  assert.equal(
    refusal("network:\n  bogus: 1\n"),
    "Policy file /etc/moat/p.yaml is invalid: unknown key 'network.bogus'",
  );
});

Deno.test("other problems still name their key", () => {
  assert.match(refusal("limits:\n  memoryMb: 1\n"), /key 'limits\.memoryMb': /);
});

Deno.test("a misspelt policy name lists the policies that exist and the likely one", async () => {
  const names = await policyNames();
  assert.deepEqual(names, ["default", "deploy", "permissive", "strict"]);
  await assert.rejects(
    loadPolicy("stict"),
    new PolicyError(
      `MOAT_POLICY 'stict' names no policy in ${POLICY_DIR}/ ` +
        "(the policies there: default, deploy, permissive, strict); did you mean 'strict'?",
    ),
  );
  await assert.rejects(
    loadPolicy("nothing-like-it"),
    /names no policy .*\(the policies there: default, deploy, permissive, strict\); or give the path/,
  );
  // A path that does not exist is still said as a file that cannot be read.
  await assert.rejects(loadPolicy("/nonexistent/p.yaml"), /p\.yaml cannot be read/);
});
