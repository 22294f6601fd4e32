/**
 * `GET /health/ready`: the readiness probe a load balancer routes by. `/health` says the process
 * serves at all; this says whether this instance can take a new session now: an interpreter is
 * warm in the pool and the session store answers. No token, like `/health`.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { json, serve } from "./openapi.ts";
import { ReadySchema } from "./schemas.ts";

/** What start-up knows of the instance; `readiness` turns it into the answer. */
export interface ReadinessSources {
  /** Interpreters ready in the pool, and how many it keeps. */
  pool: () => { ready: number; size: number };
  /** Resolves when the store answers; rejects saying why not (`Store.ping`). */
  ping: () => Promise<void>;
  /** `MOAT_INSTANCE_ID`. */
  instance: string;
}

/** The body of `/health/ready`. */
export interface Readiness {
  status: "ready" | "not-ready";
  notReady: string[];
  poolReady: number;
  store: "ok" | "unreachable";
  instance: string;
}

/** How long the store may take to answer a readiness ping. */
const PING_TIMEOUT_MS = 1_000;

/** Builds the readiness check from what start-up opened. */
export function readiness(sources: ReadinessSources): () => Promise<Readiness> {
  return async () => {
    const notReady: string[] = [];
    const pool = sources.pool();
    if (pool.size > 0 && pool.ready === 0) {
      notReady.push(`no interpreter is warm in the pool yet (it keeps ${pool.size})`);
    }
    let store: Readiness["store"] = "ok";
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        sources.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer in ${PING_TIMEOUT_MS} ms`)),
            PING_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (err) {
      store = "unreachable";
      notReady.push(`the session store is not reachable: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    return {
      status: notReady.length ? "not-ready" : "ready",
      notReady,
      poolReady: pool.ready,
      store,
      instance: sources.instance,
    };
  };
}

/** The route; `closing` makes it 503 while the server shuts down. */
export function readyRoutes(
  ready: () => Promise<Readiness>,
  closing: () => boolean,
): OpenAPIHono {
  const app = new OpenAPIHono();
  serve(app, {
    method: "get",
    path: "/health/ready",
    tags: ["operations"],
    summary: "Readiness, for load balancers: pool warm, store reachable (no token)",
    security: [],
    responses: {
      200: json(ReadySchema, "This instance can take new sessions."),
      503: json(ReadySchema, "Not ready; `notReady` says what is missing."),
    },
  }, async (c) => {
    const answer = await ready();
    if (closing()) {
      answer.status = "not-ready";
      answer.notReady.unshift("the server is shutting down");
    }
    return c.json(answer, answer.status === "ready" ? 200 : 503);
  });
  return app;
}
