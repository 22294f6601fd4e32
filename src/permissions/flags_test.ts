/**
 * Code mode's upstream servers widen the server's flags by exactly their hosts and the variables
 * their headers name, and the sandbox's workers by nothing.
 */
import assert from "node:assert/strict";
import { PolicySchema } from "../policy/schema.ts";
import { workerPermissions } from "../sandbox/worker_permissions.ts";
import { flagsFor, grantsFor, grantsForAll } from "./flags.ts";

/** `--allow-<kind>=a,b` → `["a", "b"]`; the other flags as they are. */
function parse(flags: string[]): { lists: Record<string, string[]>; others: string[] } {
  const lists: Record<string, string[]> = {};
  const others: string[] = [];
  for (const flag of flags) {
    const match = /^--allow-(read|write|net|env)=(.*)$/.exec(flag);
    if (match) lists[match[1]] = match[2].split(",");
    else others.push(flag);
  }
  return { lists, others };
}

const withTools = PolicySchema.parse({
  network: { allow: ["pypi.org"] },
  tools: {
    mcp: [
      { name: "gh", url: "https://api.example.com/mcp", headers: { A: "Bearer ${GH_TOKEN}" } },
      { name: "local", url: "http://10.0.0.5:9000/mcp", headers: { B: "${X_ID}:${X_KEY}" } },
      { name: "plain", url: "http://tools.internal/mcp", headers: { C: "no variable" } },
    ],
  },
});

Deno.test("the flags grant the upstream hosts and header variables, and nothing more", () => {
  const base = parse(flagsFor(grantsFor(PolicySchema.parse({ network: { allow: ["pypi.org"] } }))));
  const after = parse(flagsFor(grantsFor(withTools)));
  assert.deepEqual(after.lists.net, [
    ...base.lists.net,
    "api.example.com:443",
    "10.0.0.5:9000",
    "tools.internal:80",
  ]);
  assert.deepEqual(after.lists.env, [...base.lists.env, "GH_TOKEN", "X_ID", "X_KEY"]);
  assert.deepEqual(after.lists.read, base.lists.read);
  assert.deepEqual(after.lists.write, base.lists.write);
  assert.deepEqual(after.others, base.others);
});

Deno.test("a policy without upstream servers grants no upstream host or variable", () => {
  const plain = grantsFor(PolicySchema.parse({}));
  assert.ok(!plain.net.some((h) => /example|10\.0\.0\.5|tools\.internal/.test(h)));
  assert.ok(!plain.env.some((n) => ["GH_TOKEN", "X_ID", "X_KEY"].includes(n)));
});

Deno.test("the sandbox's workers never get the network, nor any variable", () => {
  const url = new URL("file:///moat/src/worker/main.ts");
  assert.equal(workerPermissions(url).net, false);
  assert.equal(workerPermissions(url).env, false);
});

Deno.test("network.allow: its hosts and the variables its headers name, and only they", () => {
  const policy = PolicySchema.parse({
    network: {
      allow: [
        "plain.example",
        { host: "api.example:8443", headers: { Authorization: "Bearer ${API_KEY}" }, perMinute: 5 },
        { host: "other.example", headers: { "X-Id": "${API_ID}-${API_KEY}" } },
      ],
    },
  });
  const grants = grantsFor(policy);
  const base = grantsFor(PolicySchema.parse({}));
  for (const host of ["plain.example", "api.example:8443", "other.example"]) {
    assert.ok(grants.net.includes(host), host);
  }
  assert.deepEqual(grants.env, [...base.env, "API_ID", "API_KEY"]);
  assert.deepEqual(workerPermissions(new URL("file:///moat/src/worker/main.ts")).net, false);
});

Deno.test("tenant policies add what each needs to the server's grants, and nothing more", () => {
  const server = PolicySchema.parse({ network: { allow: ["server.example"] } });
  const acme = PolicySchema.parse({
    network: { allow: [{ host: "acme.example", headers: { "X-Key": "${ACME_KEY}" } }] },
    mounts: [{ host: "/srv/acme-data", at: "/data" }],
  });
  const where = { policyPath: "/etc/moat/server.yaml" };
  const grants = grantsForAll(server, where, [{ path: "/etc/moat/acme.yaml", policy: acme }]);
  const alone = grantsFor(server, where);
  for (const host of ["server.example", "acme.example"]) assert.ok(grants.net.includes(host), host);
  for (const path of ["/etc/moat/acme.yaml", "/srv/acme-data"]) {
    assert.ok(grants.read.includes(path), path);
    assert.ok(!alone.read.includes(path), path);
  }
  assert.deepEqual(grants.env, [...alone.env, "ACME_KEY"]);
  assert.deepEqual(grants.write, alone.write);
  assert.deepEqual(grantsForAll(server, where), alone);
});
