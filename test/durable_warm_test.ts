/**
 * Restores go into a worker prepared in advance (Pyodide instantiated, no session in it): a
 * session restored there finds nothing of any other session, and each prepared worker serves
 * one session only.
 */
import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";

const TOKEN = "durable-warm-token-0123456789";

/** What a session leaves behind, everywhere a later one could look. */
const SECRETS = (tag: string) => `
import random, sys, os, colorsys
secret_${tag} = "${tag}-secret"
open("/tmp/secret_${tag}.txt", "w").write("${tag}")
open("/home/pyodide/secret_${tag}.txt", "w").write("${tag}")
sys.modules["secret_module_${tag}"] = type(sys)("secret_module_${tag}")
random.seed(1234)
`;

/** What a session can see of another one tagged `other`. */
const LOOK = (other: string) => `
import os, sys
[
  'secret_${other}' in globals(),
  os.path.exists("/tmp/secret_${other}.txt"),
  os.path.exists("/home/pyodide/secret_${other}.txt"),
  "secret_module_${other}" in sys.modules,
  any("${other}" in name for name in os.listdir("/tmp") + os.listdir("/home/pyodide")),
]
`;

async function hibernated(server: TestServer, id: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const info = await server.request(`/v1/sessions/${id}`).then((r) => r.json());
    if (info.state === "hibernated") return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`session ${id} did not hibernate`);
}

Deno.test("a session restored into a prepared worker finds nothing of another session", async () => {
  const dir = await Deno.makeTempDir({ prefix: "moat-durable-warm-" });
  const env = { MOAT_TOKEN: TOKEN, MOAT_STORE: `kv:${dir}/store.kv` };
  const policyText = "limits:\n  poolSize: 1\n  hibernateAfterSeconds: 1\n";
  try {
    await using server = await startServer({ env, policyText });
    const a = await server.createSession();
    const b = await server.createSession();
    for (const [id, tag] of [[a, "a"], [b, "b"]]) {
      const set = await server.exec(SECRETS(tag), { session: id, sync: true });
      assert.equal(set.error, null, set.error?.message);
    }
    await hibernated(server, a);
    await hibernated(server, b);
    // Both come back, one after the other, each into a worker prepared while the other ran.
    for (const [id, mine, other] of [[a, "a", "b"], [b, "b", "a"]]) {
      const seen = await server.exec(LOOK(other), { session: id });
      assert.equal(seen.error, null, seen.error?.message);
      assert.equal(seen.restored, true, `session ${mine} was restored`);
      assert.deepEqual(seen.result, [false, false, false, false, false], `${mine} sees ${other}`);
      const own = await server.exec(
        `[secret_${mine}, open("/tmp/secret_${mine}.txt").read(), ` +
          `"secret_module_${mine}" in sys.modules]`,
        { session: id },
      );
      assert.deepEqual(own.result, [`${mine}-secret`, mine, true]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
