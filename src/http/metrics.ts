import { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import type { Metrics } from "../metrics.ts";
import { requireToken } from "./auth.ts";
import { BEARER, errors, serve } from "./openapi.ts";

/**
 * `GET /metrics`: Prometheus text. It needs the server's token, or `metricsToken`
 * (`MOAT_METRICS_TOKEN`), which opens nothing else, so a scraper never holds a token that runs
 * code.
 */
export function metricsRoutes(metrics: Metrics, tokens: string[]): OpenAPIHono {
  const app = new OpenAPIHono();
  serve(
    app,
    {
      method: "get",
      path: "/metrics",
      tags: ["operations"],
      summary: "Prometheus metrics (MOAT_TOKEN or MOAT_METRICS_TOKEN)",
      security: [{ [BEARER]: [] }],
      responses: {
        200: {
          description: "The Prometheus text exposition format, version 0.0.4.",
          content: { "text/plain": { schema: z.string() } },
        },
        ...errors(401),
      },
    },
    requireToken(...tokens),
    async (c) => {
      return c.body(await metrics.text(), 200, { "content-type": metrics.contentType });
    },
  );
  return app;
}
