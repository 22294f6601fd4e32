/**
 * Starts the real server (the `start` task's exact command) on a free loopback port and
 * talks HTTP to it. Nothing is mocked.
 */
import { flagsForSettings } from "../../scripts/flags.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** The protocol answer of one execute call. */
export interface ExecAnswer {
  // deno-lint-ignore no-explicit-any
  result: any;
  stdout: string;
  stderr: string;
  error: null | {
    name: string;
    message: string;
    pythonExceptionType: string;
    pythonExceptionValue: string;
    stack?: string;
  };
  durationMs: number;
  // deno-lint-ignore no-explicit-any
  [extra: string]: any;
}

export interface StartOptions {
  /** `MOAT_POLICY`: a name in policies/ or a path. */
  policy?: string;
  /** Policy YAML written to a temporary file and used instead of `policy`. */
  policyText?: string;
  env?: Record<string, string>;
  /** Extra `deno run` flags placed before `main.ts` (e.g. to test wider permissions). */
  extraFlags?: string[];
  /** Rewrites the derived flags before use (e.g. to widen one of them). */
  mapFlags?: (flags: string[]) => string[];
  /** Directories the server may read besides the start task's (a test's package mirror). */
  readPaths?: string[];
  /**
   * Start the server as Deno Deploy does: `deno run -A main.ts` with `DENO_DEPLOY=true`, every
   * setting but the environment from deno.json (so `mapFlags`, `extraFlags` and `readPaths` do not
   * apply). @default {MOAT_TEST_DEPLOY=1 in the test's environment}
   */
  deploy?: boolean;
  /** The Moat directory to start in (a copy, for tests that change its files). @default {ROOT} */
  root?: string;
}

/** The test run simulates Deno Deploy (`MOAT_TEST_DEPLOY=1`, the second pass of `.ci/run`). */
export const DEPLOY_PASS = Deno.env.get("MOAT_TEST_DEPLOY") === "1";

/** The key deploy-mode test servers seal checkpoints with (deploy mode requires one). */
export const DEPLOY_STORE_KEY = "deploy-test-store-key-0123456789";

/**
 * `deno run` arguments as Deno Deploy starts an app: `--allow-all`, no other flag (the unstable
 * features come from deno.json). One addition, for tests only: Pyodide's CDN is denied, so a
 * deploy-mode test server can never reach the internet (it fails at once instead, as it does
 * under the start task's loopback-only net grant).
 */
export const DEPLOY_ARGS = ["run", "-A", "--deny-net=cdn.jsdelivr.net", "main.ts"];

/**
 * Tests never reach the internet: whatever hosts the start task allows (Pyodide's CDN), the
 * server under test may only reach loopback addresses.
 */
export function loopbackOnly(arg: string): string {
  if (!arg.startsWith("--allow-net=")) return arg;
  const hosts = arg.slice("--allow-net=".length).split(",");
  const loopback = hosts.filter((h) => /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(h));
  return `--allow-net=${loopback.join(",")}`;
}

/**
 * The `deno run` arguments `deno task start` uses for these settings: the start task is
 * `deno run $(scripts/flags.ts) main.ts`, so the flags come from the same derivation.
 */
export async function startArgs(env: Record<string, string> = {}): Promise<string[]> {
  const task = (await startEnv()).task;
  if (!/^deno run \$\(deno run .*scripts\/flags\.ts --start\) main\.ts$/.test(task)) {
    throw new Error(
      "the start task must be 'deno run $(deno run … scripts/flags.ts --start) main.ts'",
    );
  }
  const flags = await flagsForSettings((name) => env[name], () => {});
  return ["run", ...flags, "main.ts"];
}

/**
 * The environment the start task sets before `deno run` (`NAME=value deno run …`, e.g. the
 * malloc setting that lets workers return freed memory), and the rest of the task.
 */
export async function startEnv(): Promise<{ env: Record<string, string>; task: string }> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  // `deno install --quiet && `: node_modules made or checked first (the tests run after it).
  let task: string = config.tasks.start.replace(/^deno install --quiet && /, "");
  const env: Record<string, string> = {};
  for (let m; (m = task.match(/^([A-Z_][A-Z0-9_]*)=(\S*) /));) {
    env[m[1]] = m[2];
    task = task.slice(m[0].length);
  }
  return { env, task };
}

export class TestServer implements AsyncDisposable {
  readonly token: string;
  url = "";
  /** Everything the server printed on stdout (audit lines) and stderr. */
  stdout = "";
  stderr = "";
  #child?: Deno.ChildProcess;
  #exited?: Promise<Deno.CommandStatus>;
  #tmp?: string;

  constructor(readonly options: StartOptions = {}) {
    this.token = options.env?.MOAT_TOKEN ?? "test-token-0123456789abcdef";
  }

  /** Starts the server and resolves when it prints its ready line. */
  async start(timeoutMs = 120_000): Promise<this> {
    let policy = this.options.policy ?? "default";
    this.#tmp = await Deno.makeTempDir({ prefix: "moat-test-" });
    if (this.options.policyText !== undefined) {
      policy = `${this.#tmp}/policy.yaml`;
      await Deno.writeTextFile(policy, this.options.policyText);
    }
    // Each server gets a session store of its own unless the test shares one (restarts).
    const store: Record<string, string> = this.options.env?.MOAT_STORE
      ? {}
      : { MOAT_STORE: `kv:${this.#tmp}/store.kv` };
    const env = {
      ...(await startEnv()).env,
      MOAT_HOST: "127.0.0.1",
      MOAT_PORT: "0",
      MOAT_TOKEN: this.token,
      MOAT_POLICY: policy,
      NO_COLOR: "1",
      ...store,
      ...this.options.env,
    };
    let args: string[];
    if (this.options.deploy ?? DEPLOY_PASS) {
      Object.assign(
        env,
        { DENO_DEPLOY: "true", MOAT_STORE_KEY: DEPLOY_STORE_KEY },
        this.options.env,
      );
      args = DEPLOY_ARGS;
    } else {
      args = await startArgs(env);
      if (this.options.mapFlags) {
        args = ["run", ...this.options.mapFlags(args.slice(1, -1)), "main.ts"];
      }
      args.splice(args.indexOf("main.ts"), 0, ...(this.options.extraFlags ?? []));
      const reads = this.options.readPaths ?? [];
      args = args.map(loopbackOnly).map((a) =>
        a.startsWith("--allow-read=") && reads.length ? `${a},${reads.join(",")}` : a
      );
    }
    this.#child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: this.options.root ?? ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#exited = this.#child.status;
    const ready = Promise.withResolvers<void>();
    this.#pump(this.#child.stdout, (t) => this.stdout += t);
    this.#pump(this.#child.stderr, (t) => {
      this.stderr += t;
      const m = this.stderr.match(/ready at (http:\/\/[^\s/]+)\//);
      if (m && !this.url) {
        this.url = m[1];
        ready.resolve();
      }
    });
    const timer = setTimeout(
      () => ready.reject(new Error("server did not become ready")),
      timeoutMs,
    );
    try {
      await Promise.race([
        ready.promise,
        this.#exited.then((s) => {
          throw new Error(`server exited with code ${s.code}:\n${this.stderr}`);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return this;
  }

  /** The server's process id (for benchmarks that read its resident memory). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Resolves with the exit status (for tests that expect start-up to fail). */
  async exited(): Promise<Deno.CommandStatus> {
    return await this.#exited!;
  }

  async #pump(stream: ReadableStream<Uint8Array>, on: (text: string) => void) {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) on(decoder.decode(chunk, { stream: true }));
    } catch {
      // the process went away
    }
  }

  /** A raw HTTP request with the token (unless `auth: false`). */
  request(path: string, init: RequestInit & { auth?: boolean } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.auth !== false) headers.set("Authorization", `Bearer ${this.token}`);
    return fetch(`${this.url}${path}`, { ...init, headers });
  }

  /** POSTs JSON and returns status and parsed body. */
  // deno-lint-ignore no-explicit-any
  async post(path: string, body: unknown): Promise<{ status: number; body: any }> {
    const res = await this.request(path, {
      method: "POST",
      body: typeof body === "string" ? body : JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  /** Executes code in a session (default: `/`) and expects HTTP 200. */
  async exec(
    code: string,
    options: { session?: string; packages?: string[]; timeoutMs?: number; sync?: boolean } = {},
  ): Promise<ExecAnswer> {
    const path = options.session ? `/v1/sessions/${options.session}` : "/";
    const { status, body } = await this.post(path, {
      code,
      packages: options.packages ?? [],
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.sync ? { checkpoint: "sync" } : {}),
    });
    if (status !== 200) throw new Error(`HTTP ${status}: ${JSON.stringify(body)}`);
    return body;
  }

  /** Creates a session and returns its id. */
  async createSession(mode: "persistent" | "ephemeral" = "persistent"): Promise<string> {
    const { status, body } = await this.post("/v1/sessions", { mode });
    if (status !== 201) throw new Error(`HTTP ${status}: ${JSON.stringify(body)}`);
    return body.id;
  }

  /** Sends a signal to the server process. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child?.kill(signal);
    } catch {
      // already gone
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.#exited?.catch(() => {});
    await this.#child?.stdout.cancel().catch(() => {});
    await this.#child?.stderr.cancel().catch(() => {});
    if (this.#tmp) await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
  }
}

/** Starts a server; release it with `await using`. */
export function startServer(options: StartOptions = {}): Promise<TestServer> {
  return new TestServer(options).start();
}

/** Several servers started side by side, all stopped at the end (`await using`). */
export interface Cluster extends AsyncDisposable {
  servers: TestServer[];
}

/** Starts one server per options object; if any fails to start, the others are stopped. */
export async function startServers(options: StartOptions[]): Promise<Cluster> {
  const started = await Promise.allSettled(options.map((o) => startServer(o)));
  const servers = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
  const dispose = async () => {
    await Promise.all(servers.map((s) => s[Symbol.asyncDispose]()));
  };
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await dispose();
    throw (failed as PromiseRejectedResult).reason;
  }
  return { servers, [Symbol.asyncDispose]: dispose };
}
