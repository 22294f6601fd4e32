/**
 * `deno task start` itself (the README's command, not the helper's derived `deno run`): a start
 * prints Deno's task line and the ready line, nothing else, and a bad policy says so once.
 */
import assert from "node:assert/strict";
import { ROOT } from "../src/paths.ts";

const TOKEN = "start-test-token-0123456789";
const TASK = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start as string;

/**
 * What `deno task start` printed: until it exits, or (with `whileUp`) until it is ready, then
 * `whileUp` has talked to it and it was stopped with SIGTERM.
 */
async function startTask(
  env: Record<string, string>,
  whileUp?: (url: string) => Promise<void>,
): Promise<{ stdout: string; stderr: string; code: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "start"],
    cwd: ROOT,
    env: {
      NO_COLOR: "1",
      MOAT_HOST: "127.0.0.1",
      MOAT_PORT: "0",
      MOAT_TOKEN: TOKEN,
      MOAT_STORE: "memory",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let stderr = "";
  const ready = Promise.withResolvers<string>();
  const pump = async (stream: ReadableStream<Uint8Array>, on: (t: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) on(decoder.decode(chunk, { stream: true }));
  };
  const out = pump(child.stdout, (t) => stdout += t);
  const err = pump(child.stderr, (t) => {
    stderr += t;
    const url = stderr.match(/ready at (http:\/\/\S+)\/ .*\n/)?.[1];
    if (url) ready.resolve(url);
  });
  const timer = setTimeout(() => child.kill("SIGTERM"), 120_000);
  try {
    if (whileUp) {
      const url = await Promise.race([ready.promise, child.status.then(() => undefined)]);
      if (url) await whileUp(url);
      // deno task passes SIGTERM on to the server, which stops cleanly.
      child.kill("SIGTERM");
    }
    const { code } = await child.status;
    await Promise.all([out, err]);
    return { stdout, stderr, code };
  } finally {
    clearTimeout(timer);
  }
}

/** A policy file without a preload list, so that start-up needs no network. */
async function policyFile(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "moat-start-policy-", suffix: ".yaml" });
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("deno task start prints the task line and the ready line, nothing else", async () => {
  const policy = await policyFile("packages:\n  preload: []\n");
  try {
    const { stdout, stderr } = await startTask({ MOAT_POLICY: policy }, async (url) => {
      // A body sent in chunks (no Content-Length) once made Deno print a warning about
      // request.signal's legacy behaviour.
      const body = new Blob(['{"code": "6 * 7"}']).stream();
      const res = await fetch(`${url}/`, {
        method: "POST",
        body,
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        // @ts-ignore: fetch's streaming request bodies need `duplex`, not in Deno's RequestInit
        duplex: "half",
      });
      assert.equal((await res.json()).result, 42);
    });
    const lines = stderr.split("\n");
    const ready = lines.findIndex((l) => l.includes("ready at"));
    assert.deepEqual(lines.slice(0, ready), [`Task start ${TASK}`], stderr);
    assert.match(
      lines[ready],
      new RegExp(
        String.raw`^moat: ready at http://127\.0\.0\.1:\d+/ in \d+ ms \(policy moat-start-policy-` +
          String.raw`\w+\.yaml, session store: memory \(nothing survives a restart\), ` +
          String.raw`snapshot (from cache|made now), 2 interpreters warm, instance moat-\w+\)$`,
      ),
    );
    // After it, only the clean stop this test asked for.
    assert.deepEqual(lines.slice(ready + 1).filter((l) => !/^moat: (SIGTERM: |stopped)/.test(l)), [
      "",
    ]);
    // stdout holds the audit log: the start event, one JSON line.
    assert.equal(JSON.parse(stdout.split("\n")[0]).event, "start");
  } finally {
    await Deno.remove(policy);
  }
});

Deno.test("a bad policy stops deno task start with its problem said once", async (t) => {
  await t.step("an unknown key, with the key it resembles", async () => {
    const policy = await policyFile("limits:\n  timeoutMS: 5000\n");
    try {
      const { stderr, code } = await startTask({ MOAT_POLICY: policy });
      assert.equal(code, 1);
      assert.deepEqual(stderr.split("\n"), [
        `Task start ${TASK}`,
        `moat: cannot start: Policy file ${policy} is invalid: ` +
        "unknown key 'limits.timeoutMS'; did you mean 'limits.timeoutMs'?",
        "",
      ]);
    } finally {
      await Deno.remove(policy);
    }
  });

  await t.step("a misspelt policy name, with the policies that exist", async () => {
    const { stderr, code } = await startTask({ MOAT_POLICY: "stict" });
    assert.equal(code, 1);
    assert.deepEqual(stderr.split("\n"), [
      `Task start ${TASK}`,
      `moat: cannot start: MOAT_POLICY 'stict' names no policy in ${ROOT}policies/ ` +
      "(the policies there: default, deploy, permissive, strict); did you mean 'strict'?",
      "",
    ]);
  });
});
