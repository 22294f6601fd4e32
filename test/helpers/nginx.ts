/**
 * A real load balancer for the instance tests: nginx from Debian's packages, started on a free
 * loopback port in front of the given upstreams, round-robin with no affinity (as a Kubernetes
 * Service or a plain balancer spreads requests), stopped at the end. No keepalive to the
 * upstreams (nginx's default): a request on a kept connection to an instance just killed would be
 * answered 502 by nginx itself, which does not retry a POST it may have sent.
 */
import { freePort, waitForPort } from "./redis.ts";

/** An nginx in front of some Moat instances. */
export interface TestNginx extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`, where clients send requests. */
  url: string;
  /** What nginx logged (warnings and errors: an upstream that failed, and why). */
  log(): Promise<string>;
}

/** Why the nginx tests cannot run here, or undefined when they can. */
export async function nginxUnavailable(): Promise<string | undefined> {
  try {
    await new Deno.Command("nginx", { args: ["-v"], stdout: "null", stderr: "null" }).output();
    return undefined;
  } catch {
    return "nginx is not installed (apt-get install -y nginx; .ci/run does it)";
  }
}

/** Starts nginx balancing round-robin over `upstreams` (`127.0.0.1:PORT` each). */
export async function startNginx(upstreams: string[]): Promise<TestNginx> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "moat-nginx-" });
  // nginx's workers may run as another user (nobody) and write request bodies here.
  await Deno.chmod(dir, 0o777);
  const conf = `
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream moat {
${upstreams.map((u) => `    server ${u} max_fails=0;`).join("\n")}
  }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 64m;
    location / {
      proxy_pass http://moat;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`;
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = new Deno.Command("nginx", {
    args: ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", `${dir}/error.log`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    await waitForPort(port);
  } catch (err) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`nginx did not start: ${await stderr}`, { cause: err });
  }
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => Deno.readTextFile(`${dir}/error.log`).catch(() => ""),
    async [Symbol.asyncDispose]() {
      child.kill("SIGQUIT");
      await child.status;
      await stderr.catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
