/**
 * Attacks on the process's own permissions: wider flags than the policy needs are refused at
 * start-up, the override is loud, and the policy's network hosts and mounts are all a session
 * gets.
 */
import assert from "node:assert/strict";
import { flagsFor, grantsFor } from "../../src/permissions/flags.ts";
import { ROOT } from "../../src/paths.ts";
import { parsePolicy } from "../../src/policy/load.ts";
import { DEPLOY_PASS, startServer, TestServer } from "../helpers/server.ts";
import { flagsForSettings } from "../../scripts/flags.ts";
import { expectRefused } from "./attempts.ts";

/** The derived flags with every `--allow-<kind>…` replaced by `wider`. */
function widen(kind: string, wider: string): (flags: string[]) => string[] {
  return (flags) => [...flags.filter((f) => !f.startsWith(`--allow-${kind}`)), wider];
}

async function refusedToStart(
  mapFlags: (flags: string[]) => string[],
  what: RegExp,
): Promise<void> {
  const server = new TestServer({ mapFlags });
  try {
    await assert.rejects(server.start());
    await server.exited();
    await new Promise((r) => setTimeout(r, 100));
    assert.match(server.stderr, /broader permissions than the policy needs/);
    assert.match(server.stderr, what);
  } finally {
    await server[Symbol.asyncDispose]();
  }
}

/** `-A` cannot be combined with `--allow-*` lists, so it replaces them all. */
const allowAll = (flags: string[]) => [...flags.filter((f) => !f.startsWith("--allow-")), "-A"];

Deno.test("the flags are derived from the policy and are never wider", async (t) => {
  await t.step(
    "the strict policy's flags grant no whole permission and no subprocess",
    async () => {
      const flags = await flagsForSettings((n) =>
        ({ MOAT_POLICY: "strict" } as Record<string, string>)[n]
      );
      assert.ok(flags.includes("--no-prompt"));
      assert.ok(flags.includes("--v8-flags=--disallow-code-generation-from-strings"));
      for (const flag of flags) {
        // sys: setPriority only (interpreters lower their own thread's priority, then revoke it)
        assert.match(
          flag,
          /^--(no-prompt|v8-flags=.+|allow-(read|write|net|env)=.+|allow-sys=setPriority)$/,
          flag,
        );
      }
      assert.ok(!flags.some((f) => f.startsWith("--allow-run") || f === "-A"));
      // The listen address, and Pyodide's CDN for wheels (the strict policy names no mirror).
      assert.ok(flags.includes("--allow-net=127.0.0.1:8000,cdn.jsdelivr.net"), flags.join(" "));
    },
  );

  await t.step("network hosts and mounts of a policy appear in its flags, and only they", () => {
    const policy = parsePolicy(
      "network:\n  allow: [api.example.test]\nmounts:\n  - { host: data, at: /data }\n",
      "test",
    );
    const flags = flagsFor(grantsFor(policy, { host: "127.0.0.1", port: 0 }));
    assert.ok(flags.includes("--allow-net=127.0.0.1,api.example.test,cdn.jsdelivr.net"));
    assert.ok(flags.some((f) => f.startsWith("--allow-read=") && f.includes(`${ROOT}data`)));
    assert.deepEqual(flags.filter((f) => f.startsWith("--allow-write")), [
      `--allow-write=${ROOT}.moat-cache`,
    ]);
  });

  await t.step("an invalid policy yields flags that only let the server report it", async () => {
    const flags = await flagsForSettings(
      (n) => ({ MOAT_POLICY: "/nonexistent/policy.yaml" } as Record<string, string>)[n],
      () => {},
    );
    assert.ok(!flags.some((f) => f.startsWith("--allow-net") || f.startsWith("--allow-write")));
  });
});

Deno.test({
  name: "the server refuses broader permissions than its policy needs",
  // Deploy mode accepts --allow-all by design (test/security/deploy_test.ts proves instead that
  // workers stay narrowed); these flags do not exist there.
  ignore: DEPLOY_PASS,
}, async (t) => {
  const wider: [string, (flags: string[]) => string[], RegExp][] = [
    ["-A", allowAll, /all read/],
    ["a bare --allow-read", widen("read", "--allow-read"), /all read/],
    ["--allow-read=/", widen("read", "--allow-read=/"), /read \//],
    ["--allow-write=/tmp", (f) => [...f, "--allow-write=/tmp"], /write \/tmp/],
    ["--allow-run=sh", (f) => [...f, "--allow-run=sh"], /run sh/],
    ["every environment variable", widen("env", "--allow-env"), /all env/],
    [
      "HOME added to --allow-env",
      (f) => f.map((x) => x.startsWith("--allow-env=") ? `${x},HOME` : x),
      /env HOME/,
    ],
    ["net to any host", widen("net", "--allow-net"), /all net/],
    ["--allow-sys", widen("sys", "--allow-sys"), /all sys/],
    [
      "sys hostname added to setPriority",
      widen("sys", "--allow-sys=setPriority,hostname"),
      /sys hostname/,
    ],
    ["--allow-ffi", (f) => [...f, "--allow-ffi"], /all ffi/],
    [
      "code generation from strings",
      (f) => f.filter((x) => !x.startsWith("--v8-flags")),
      /code generation/,
    ],
  ];
  for (const [what, mapFlags, named] of wider) {
    await t.step(
      `starting with ${what} is refused, naming it`,
      () => refusedToStart(mapFlags, named),
    );
  }

  await t.step(
    "MOAT_ALLOW_BROAD_PERMISSIONS=1 starts anyway, with a warning and an event",
    async () => {
      await using server = await startServer({
        mapFlags: allowAll,
        env: { MOAT_ALLOW_BROAD_PERMISSIONS: "1" },
      });
      assert.match(server.stderr, /WARNING: running with broader permissions/);
      assert.match(server.stdout, /"event":"security","kind":"broad-permissions"/);
      // Even then the interpreter holds nothing.
      await expectRefused(server, "open('/etc/passwd').read()");
    },
  );

  await t.step("the strict and permissive policies start with their derived flags", async () => {
    for (const policy of ["strict", "permissive"]) {
      await using server = await startServer({ policy });
      assert.equal((await server.exec("1 + 1")).result, 2);
    }
  });
});

Deno.test("a session reaches only the network hosts and host files its policy grants", async (t) => {
  const allowed = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/redirect") return Response.redirect("http://127.0.0.1:9/", 302);
    return new Response(`hello from ${path}`);
  });
  const other = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    return new Response("must not be reached");
  });
  const data = await Deno.makeTempDir({ prefix: "moat-mount-" });
  await Deno.writeTextFile(`${data}/notes.txt`, "mounted text");
  await Deno.mkdir(`${data}/sub`);
  await Deno.writeTextFile(`${data}/sub/deep.txt`, "deep");
  await Deno.symlink("/etc/passwd", `${data}/passwd-link`);
  const allowedHost = `127.0.0.1:${allowed.addr.port}`;
  try {
    await using server = await startServer({
      policyText:
        `network:\n  allow: ["${allowedHost}"]\nmounts:\n  - { host: "${data}", at: /data }\n`,
    });

    await t.step("moat.fetch reaches a host the policy allows", async () => {
      const answer = await server.exec(
        `import moat\nr = await moat.fetch("http://${allowedHost}/ok")\n[r.status, r.text()]`,
      );
      assert.deepEqual(answer.result, [200, "hello from /ok"]);
    });

    await t.step("moat.fetch to another loopback port is refused", async () => {
      await expectRefused(
        server,
        `import moat\nawait moat.fetch("http://127.0.0.1:${other.addr.port}/")`,
        /PermissionError/,
      );
    });

    await t.step("moat.fetch does not follow a redirect to another host", async () => {
      const answer = await server.exec(
        `import moat\n(await moat.fetch("http://${allowedHost}/redirect")).status`,
      );
      assert.equal(answer.result, 302);
    });

    await t.step("moat.fetch of a file: URL is refused", async () => {
      await expectRefused(
        server,
        `import moat\nawait moat.fetch("file:///etc/passwd")`,
        /PermissionError/,
      );
    });

    await t.step("even with network allowed, js and pyodide_js stay empty", async () => {
      await expectRefused(server, "import js\njs.fetch", /AttributeError/);
    });

    await t.step("a mounted directory is readable, files and subdirectories alike", async () => {
      const answer = await server.exec(
        "[open('/data/notes.txt').read(), open('/data/sub/deep.txt').read()]",
      );
      assert.deepEqual(answer.result, ["mounted text", "deep"]);
    });

    await t.step("a symbolic link in a mount does not carry it outside", async () => {
      await expectRefused(server, "open('/data/passwd-link').read()");
    });

    await t.step("writing to a mounted file is refused", async () => {
      await expectRefused(
        server,
        "open('/data/notes.txt', 'w').write('changed')",
        /PermissionError/,
      );
    });

    await t.step("a write that forces its way in never reaches the host", async () => {
      await server.exec(
        "import os\nos.chmod('/data/notes.txt', 0o666)\nopen('/data/notes.txt', 'w').write('changed')",
      );
      assert.equal(await Deno.readTextFile(`${data}/notes.txt`), "mounted text");
    });

    await t.step("walking up from a mount finds no host directory", async () => {
      await expectRefused(server, "open('/data/../../etc/passwd').read()");
    });
  } finally {
    await allowed.shutdown();
    await other.shutdown();
    await Deno.remove(data, { recursive: true });
  }
});
