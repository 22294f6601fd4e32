/**
 * `moat.fetch` as interpreters checkpointed before outbound HTTP went through the host knew it:
 * an async `(url, optionsJson) → JSON text`. A restore rebuilds it (role `fetch`) over the host's
 * channel (`sendHttp`), so their `await moat.fetch(...)` keeps working; new interpreters call
 * `sendHttp` directly (role `http`).
 */
import { sendHttp } from "./tools.ts";

/** The old `moat.fetch` bridge, answered by the host. */
export function legacyFetch(url: string, optionsJson: string): Promise<string> {
  let options: { method?: string; headers?: Record<string, string>; body?: string };
  try {
    options = JSON.parse(optionsJson);
  } catch {
    return Promise.resolve(JSON.stringify({ error: "the request is not valid" }));
  }
  const answer = JSON.parse(sendHttp(JSON.stringify({
    url,
    method: options.method ?? "GET",
    headers: Object.entries(options.headers ?? {}),
    body: options.body,
  })));
  if (answer.interrupted) return Promise.resolve(JSON.stringify({ error: "interrupted" }));
  if (answer.error) return Promise.resolve(JSON.stringify({ error: answer.error }));
  const headers = Object.fromEntries(answer.headers as [string, string][]);
  return Promise.resolve(JSON.stringify({ status: answer.status, headers, body: answer.body }));
}
