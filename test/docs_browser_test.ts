/**
 * The docs page in a real browser: Debian's headless Chromium, driven by playwright-core (in
 * test/helpers/docs_browser.ts). CI installs chromium (.ci/run); without it the test is skipped
 * and says why. The screenshot is left in test-artifacts/docs.png.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

const CHROMIUM = "/usr/bin/chromium";
const HERE = new URL("./", import.meta.url);
const ARTIFACTS = decodeURIComponent(new URL("../test-artifacts/", HERE).pathname);

const present = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!present) {
  console.log(`docs page test skipped: ${CHROMIUM} is absent (apt-get install chromium)`);
}

Deno.test({
  name: "the docs page lists every route in a browser, loading nothing from elsewhere",
  ignore: !present,
  fn: async () => {
    await using server = await startServer({ env: { MOAT_TOKEN: "browser-token-0123456789" } });
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        // The browser driver, not Moat: playwright reads /proc/sys, which Deno grants only to -A.
        "--allow-all",
        new URL("helpers/docs_browser.ts", HERE).pathname,
        `${server.url}/docs`,
        `${ARTIFACTS}docs.png`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, stderr);
    const seen = JSON.parse(new TextDecoder().decode(out.stdout));

    assert.equal(seen.status, 200);
    assert.equal(seen.title, "Moat API");
    const doc = await (await server.request("/openapi.json", { auth: false })).json();
    for (const [path, ops] of Object.entries(doc.paths as Record<string, object>)) {
      for (const method of Object.keys(ops)) {
        const op = `${method.toUpperCase()} ${path}`;
        assert.ok(seen.shown.includes(op), `${op} is not on the page: ${seen.shown.join(", ")}`);
      }
    }
    assert.match(seen.example, /x = 6 \* 7/, "POST / shows its request example");
    const origin = new URL(server.url).origin;
    const elsewhere = seen.requests.filter((u: string) =>
      !u.startsWith(`${origin}/`) && !u.startsWith("data:")
    );
    assert.deepEqual(elsewhere, [], "the page asked for something Moat does not serve");
    assert.ok(seen.requests.includes(`${origin}/openapi.json`));
    assert.deepEqual(seen.failures, []);
    assert.ok((await Deno.stat(`${ARTIFACTS}docs.png`)).size > 10_000);
  },
});
