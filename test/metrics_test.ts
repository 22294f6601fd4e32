import assert from "node:assert/strict";
import { startServer, type TestServer } from "./helpers/server.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** One sample line: `name{labels} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((line) => {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = Object.fromEntries(
      [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    return { name: m[1], labels, value: Number(m[3]) };
  });
}

/** The value of one series (0 when absent). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const hit = samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return hit?.value ?? 0;
}

async function scrape(server: TestServer, token = server.token): Promise<string> {
  const res = await server.request("/metrics", {
    auth: false,
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  return await res.text();
}

/** `promtool check metrics` reads the exposition on stdin; its output lists any problem. */
async function promtool(text: string): Promise<{ ok: boolean; output: string } | undefined> {
  let child;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const output = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { ok: out.success, output };
}

Deno.test("/metrics counts a mixed workload in valid Prometheus text", async (t) => {
  const metricsToken = "scraper-token-0123456789";
  await using server = await startServer({
    policyText: "limits:\n  poolSize: 1\npackages:\n  preload: []\n  deny: [requests]\n",
    env: { MOAT_METRICS_TOKEN: metricsToken },
  });

  await t.step("it needs a token: none or a wrong one gets 401", async () => {
    for (
      const headers of [{}, { Authorization: "Bearer wrong-token-0123456789" }] as HeadersInit[]
    ) {
      const res = await server.request("/metrics", { auth: false, headers });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error.name, "Unauthorized");
    }
  });

  await t.step("MOAT_METRICS_TOKEN opens /metrics and nothing else", async () => {
    await scrape(server, metricsToken);
    const res = await server.request("/", {
      method: "POST",
      auth: false,
      headers: { Authorization: `Bearer ${metricsToken}` },
      body: JSON.stringify({ code: "1" }),
    });
    assert.equal(res.status, 401);
    await res.body?.cancel();
  });

  const before = parse(await scrape(server));
  const session = await server.createSession();
  // The workload: 2 fine calls, 1 Python error, 1 timeout, 1 refused package, 1 denied import.
  assert.equal((await server.exec("1 + 1")).error, null);
  assert.equal((await server.exec("x = 2", { session })).error, null);
  assert.equal((await server.exec("1 / 0")).error?.pythonExceptionType, "ZeroDivisionError");
  const slow = await server.exec("while True: pass", { timeoutMs: 300 });
  assert.equal(slow.error?.pythonExceptionType, "TimeoutError");
  const pkg = await server.exec("'no requests'", { packages: ["requests"] });
  assert.equal(pkg.packages.failed.length, 1);
  const denied = await server.exec("import _pyodide_core");
  assert.ok(denied.error, "the import was refused");

  const text = await scrape(server);
  const after = parse(text);
  const moved = (name: string, labels: Record<string, string> = {}) =>
    value(after, name, labels) - value(before, name, labels);

  const checked = await promtool(text);
  if (!checked) console.log("promtool is not installed (apt-get install -y prometheus): not run");
  await t.step({
    name: "promtool check metrics finds nothing wrong",
    ignore: !checked,
    fn: () => {
      assert.ok(checked!.ok, checked!.output);
      assert.equal(checked!.output.trim(), "", checked!.output);
    },
  });

  await t.step("calls are counted by outcome and limit, as the workload ran them", () => {
    assert.equal(moved("moat_calls_total", { outcome: "ok", limit: "none" }), 3);
    assert.equal(moved("moat_calls_total", { outcome: "error", limit: "none" }), 2);
    assert.equal(moved("moat_calls_total", { outcome: "error", limit: "timeout" }), 1);
    assert.equal(moved("moat_call_duration_seconds_count", { outcome: "ok" }), 3);
    assert.equal(moved("moat_call_duration_seconds_count", { outcome: "error" }), 3);
    assert.ok(moved("moat_call_duration_seconds_sum", { outcome: "error" }) >= 0.3);
  });

  await t.step("the refused package and the security events are counted", () => {
    assert.equal(moved("moat_package_load_failures_total"), 1);
    assert.equal(moved("moat_package_loads_total"), 0);
    assert.equal(moved("moat_security_events_total", { kind: "denied" }), 1);
    assert.equal(moved("moat_security_events_total", { kind: "limit" }), 1);
    // Only if the loop did not stop within the grace (a loaded machine) was its worker killed.
    const killed = slow.error!.message.includes("interpreter was replaced") ? 1 : 0;
    assert.equal(moved("moat_security_events_total", { kind: "worker-killed" }), killed);
  });

  await t.step("interpreter boots, the pool, sessions and memory are reported", () => {
    // The pool's first interpreter, the default session's, and the new session's at least.
    assert.ok(value(after, "moat_interpreter_boots_total", { outcome: "ok" }) >= 2);
    assert.equal(value(after, "moat_interpreter_boots_total", { outcome: "failed" }), 0);
    assert.ok(value(after, "moat_interpreter_boot_duration_seconds_count") >= 2);
    assert.ok(value(after, "moat_interpreter_boot_duration_seconds_sum") > 0);
    assert.ok(value(after, "moat_pool_ready") <= 1);
    assert.equal(value(after, "moat_sessions", { state: "live" }), 2);
    assert.equal(value(after, "moat_sessions", { state: "hibernated" }), 0);
    assert.ok(value(after, "process_resident_memory_bytes") > 50 * 1024 * 1024);
    const checkpointSeries = [
      "moat_checkpoints_total",
      "moat_checkpoint_bytes_count",
      "moat_checkpoint_hold_seconds_count",
    ];
    for (const name of checkpointSeries) {
      assert.ok(after.some((s) => s.name === name), `${name} is defined`);
    }
  });

  await t.step("labels hold no session id, code, package name or path", () => {
    // The one info series names the instance; every other label comes from a fixed set.
    const info = after.filter((s) => s.name === "moat_instance_info");
    assert.equal(info.length, 1);
    assert.equal(info[0].labels.mode, "local");
    const values = new Set(
      after.filter((s) => s !== info[0]).flatMap((s) => Object.values(s.labels)),
    );
    const allowed =
      /^(ok|error|failed|none|timeout|memory|stdout|stderr|result|crash|denied|limit|worker-killed|broad-permissions|live|hibernated|[0-9.e+]+|\+Inf)$/;
    for (const v of values) assert.match(v, allowed);
    for (const secret of [session, "default", "_pyodide_core", ROOT, server.token]) {
      assert.ok(!text.includes(secret), `the metrics mention ${secret}`);
    }
    // The package the workload loaded is in no label (the outbound metric's name says "requests").
    assert.ok(!values.has("requests"), "a label names the package");
  });
});
