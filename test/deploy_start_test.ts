/**
 * Start-up in deploy mode with and without the snapshot Deno Deploy's build step ships
 * (`deno task snapshot`, named in deno.json's `deploy.build`), in a copy of the app directory.
 * Where the app directory cannot be written (here: `.moat-cache` is a file, as good as a
 * read-only disk even for root), the instance makes the snapshot once in its temporary directory.
 */
import assert from "node:assert/strict";
import { copyApp } from "./helpers/app_copy.ts";
import { startServer } from "./helpers/server.ts";

Deno.test("a deploy-mode instance boots from the shipped snapshot, or makes one once", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "moat-deploy-start-" });
  const app = `${dir}/app/`;
  const tmp = `${dir}/tmp`;
  await copyApp(app);
  await Deno.mkdir(tmp);
  const start = () =>
    startServer({ deploy: true, root: app, env: { TMPDIR: tmp, MOAT_POLICY: "deploy" } });
  try {
    await t.step(
      "without a snapshot or a writable app directory, one is made in TMPDIR",
      async () => {
        await Deno.writeTextFile(`${app}.moat-cache`, "not a directory");
        await using server = await start();
        assert.match(server.stderr, new RegExp(`cached the snapshot in ${tmp}/moat-cache/`));
        assert.match(server.stderr, /snapshot made now/);
        assert.equal((await server.exec("6 * 7")).result, 42);
      },
    );

    await t.step("the next start on that instance boots from the snapshot it made", async () => {
      await using server = await start();
      assert.doesNotMatch(server.stderr, /snapshot made now/);
      assert.match(server.stderr, /snapshot from cache/);
      assert.equal((await server.exec("6 * 7")).result, 42);
    });

    await t.step("deno task snapshot, the build step, ships one that boots at once", async () => {
      await Deno.remove(`${app}.moat-cache`);
      await Deno.remove(`${tmp}/moat-cache`, { recursive: true });
      const build = await new Deno.Command(Deno.execPath(), {
        args: ["task", "snapshot"],
        cwd: app,
        env: { DENO_DEPLOY: "true", CI: "true", NO_COLOR: "1" },
        stdout: "null",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(build.stderr);
      assert.ok(build.success, log);
      assert.match(log, /snapshot made at .*\.moat-cache\/snapshot-/);
      await using server = await start();
      assert.match(server.stderr, /snapshot from cache/);
      assert.doesNotMatch(server.stderr, /snapshot made now/);
      assert.equal((await server.exec("6 * 7")).result, 42);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
