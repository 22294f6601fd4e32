/**
 * A real `redis-server` for tests: the one `MOAT_TEST_REDIS_URL` names, or one started here on a
 * free loopback port (no persistence, in a temporary directory) and stopped at the end.
 */

/** A Redis the tests can reach; `stop`/`start`/`pause`/`resume` only for one started here. */
export interface TestRedis extends AsyncDisposable {
  url: string;
  /** False when `MOAT_TEST_REDIS_URL` names a server the tests do not control. */
  owned: boolean;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port, and waits until it accepts connections. */
  start(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open but nothing answers. */
  pause(): void;
  resume(): void;
}

/** Why Redis tests cannot run here, or undefined when they can. */
export async function redisUnavailable(): Promise<string | undefined> {
  if (Deno.env.get("MOAT_TEST_REDIS_URL")) return undefined;
  try {
    await new Deno.Command("redis-server", { args: ["--version"], stdout: "null" }).output();
    return undefined;
  } catch {
    return "redis-server is not installed (apt-get install -y redis-server; .ci/run does it)";
  }
}

export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

export async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/** The Redis to test against. */
export async function startRedis(): Promise<TestRedis> {
  const external = Deno.env.get("MOAT_TEST_REDIS_URL");
  const none = () => Promise.reject(new Error("MOAT_TEST_REDIS_URL is not ours to stop"));
  if (external) {
    return {
      url: external,
      owned: false,
      stop: none,
      start: none,
      pause: () => {},
      resume: () => {},
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  }
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "moat-redis-" });
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    child = new Deno.Command("redis-server", { args, cwd: dir, stdout: "null", stderr: "null" })
      .spawn();
    await waitForPort(port);
  };
  const stop = async () => {
    if (!child) return;
    child.kill("SIGCONT");
    child.kill("SIGTERM");
    await child.status;
    child = undefined;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}/0`,
    owned: true,
    stop,
    start,
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
