/**
 * Deploy mode (`DENO_DEPLOY=true`): the server runs as Deno Deploy starts an app, with
 * `--allow-all` and no flags, and must still give every worker only its narrowed permissions, or
 * refuse to start. (The rest of test/security/ runs in deploy mode too: `MOAT_TEST_DEPLOY=1`,
 * the second pass of `.ci/run`.)
 */
import assert from "node:assert/strict";
import { unstableFeatureListed, workerProblems } from "../../src/deploy/check.ts";
import { DeployRefused, proveWorkersNarrowed } from "../../src/deploy/startup.ts";
import { ROOT } from "../../src/paths.ts";
import { DEPLOY_STORE_KEY, startServer, TestServer } from "../helpers/server.ts";
import { expectRefused } from "./attempts.ts";

Deno.test("in deploy mode the server runs under --allow-all with narrowed workers", async (t) => {
  // `kv` without a path: as on Deploy, where it is the platform's database.
  await using server = await startServer({
    deploy: true,
    env: { MOAT_INSTANCE_ID: "deploy-a", MOAT_STORE: "kv" },
  });

  await t.step("the start line and the audit log say deploy mode", async () => {
    assert.match(server.stderr, /ready at \S+ in \d+ ms \(deploy mode, /);
    // The audit line is written just after the ready line, on the other stream.
    for (let i = 0; i < 100 && !server.stdout.includes('"event":"start"'); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.match(server.stderr, /checking that a worker gets its own narrowed permissions/);
    const start = server.stdout.split("\n").find((l) => l.includes('"event":"start"'));
    assert.ok(start, server.stdout);
    assert.equal(JSON.parse(start).mode, "deploy mode");
    assert.equal(JSON.parse(start).instance, "deploy-a");
  });

  await t.step("the broad permissions are accepted, not refused", () => {
    assert.doesNotMatch(server.stderr, /broader permissions than the policy needs/);
  });

  await t.step("an interpreter still reaches no host file, variable or process", async () => {
    await expectRefused(server, "open('/etc/passwd').read()");
    await expectRefused(server, "import js\njs.Deno.env.get('MOAT_TOKEN')");
    await expectRefused(server, "import subprocess\nsubprocess.run(['sh', '-c', 'id'])");
  });

  await t.step("session details and audit lines name the instance", async () => {
    const res = await server.request("/v1/sessions/default");
    assert.equal((await res.json()).instance, "deploy-a");
    await server.exec("1 + 1");
    const call = server.stdout.split("\n").findLast((l) => l.includes('"event":"call"'));
    assert.equal(JSON.parse(call!).instance, "deploy-a");
  });

  await t.step("the store is Deno KV's own database, opened without a path", () => {
    assert.match(server.stderr, /session store: Deno KV \(the platform's database\)/);
  });
});

Deno.test("deploy mode refuses to start without MOAT_STORE_KEY, saying so", async () => {
  const server = new TestServer({ deploy: true, env: { MOAT_STORE_KEY: "" } });
  try {
    await assert.rejects(server.start());
    assert.equal((await server.exited()).code, 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.match(server.stderr, /cannot start: MOAT_STORE_KEY: must be set in deploy mode/);
  } finally {
    await server[Symbol.asyncDispose]();
  }
});

Deno.test("deploy mode fails closed where workers could inherit permissions", async (t) => {
  await t.step("a probe worker with the interpreter's options holds only them", async () => {
    assert.deepEqual(await workerProblems([]), []);
    assert.deepEqual(await workerProblems(["127.0.0.1:9"]), []);
  });

  await t.step(
    "a worker that inherits --allow-all is reported, permission by permission",
    async () => {
      const problems = await workerProblems([], "inherit");
      for (const what of ["read /", "all env", "all run", "write /"]) {
        assert.ok(problems.some((p) => p.startsWith(`${what} is granted`)), problems.join("; "));
      }
    },
  );

  await t.step("a deno.json without the worker-options feature is named at start-up", async () => {
    assert.equal(unstableFeatureListed('{"unstable": ["kv"]}'), false);
    assert.equal(unstableFeatureListed(await Deno.readTextFile(`${ROOT}deno.json`)), true);
    const dir = await Deno.makeTempDir({ prefix: "moat-deploy-" });
    try {
      await Deno.writeTextFile(`${dir}/deno.json`, '{"unstable": ["kv"]}');
      await assert.rejects(
        proveWorkersNarrowed([], () => {}, `${dir}/deno.json`),
        (err: Error) => err instanceof DeployRefused && /'worker-options'/.test(err.message),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("without the feature, Deno stops the server before any worker runs", async () => {
    // The server as Deploy would start it if deno.json lacked "worker-options": a copy of
    // deno.json without it (beside the real one, so node_modules resolves the same way).
    const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
    config.unstable = config.unstable.filter((f: string) => f !== "worker-options");
    const path = `${ROOT}.deno-test-without-worker-options.json`;
    await Deno.writeTextFile(path, JSON.stringify(config));
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--deny-net=cdn.jsdelivr.net", `--config=${path}`, "main.ts"],
        cwd: ROOT,
        env: {
          DENO_DEPLOY: "true",
          MOAT_STORE_KEY: DEPLOY_STORE_KEY,
          MOAT_HOST: "127.0.0.1",
          MOAT_PORT: "0",
          MOAT_TOKEN: "test-token-0123456789abcdef",
          NO_COLOR: "1",
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.notEqual(out.code, 0, stderr);
      assert.match(stderr, /Unstable API 'Worker\.deno\.permissions'/);
      assert.doesNotMatch(stderr, /ready at|interpreters warm/);
    } finally {
      await Deno.remove(path).catch(() => {});
    }
  });
});
