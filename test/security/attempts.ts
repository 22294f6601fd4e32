/** Shared pieces of the attack suite: a server answer must never show any of these. */
import assert from "node:assert/strict";
import type { ExecAnswer, TestServer } from "../helpers/server.ts";

/** The token every attack server runs with; no answer may ever contain it. */
export const SECRET_TOKEN = "secret-token-must-never-leak-0123456789";

/** Host facts that must never reach Python: /etc/passwd, the server's source, its token. */
export function assertNothingLeaked(answer: unknown): void {
  const text = JSON.stringify(answer);
  assert.doesNotMatch(text, /root:x:0:0/);
  assert.doesNotMatch(text, new RegExp(SECRET_TOKEN));
  assert.doesNotMatch(text, /Deno\.serve|loadPolicy|SessionManager/);
}

/** Runs an attack that must end in a Python exception; returns the answer. */
export async function expectRefused(
  server: TestServer,
  code: string,
  type?: RegExp,
): Promise<ExecAnswer> {
  const answer = await server.exec(code);
  assert.notEqual(answer.error, null, `expected an error, got ${JSON.stringify(answer.result)}`);
  if (type) assert.match(answer.error!.pythonExceptionType, type, answer.error!.message);
  assertNothingLeaked(answer);
  return answer;
}

/** The server is still healthy and still runs code. */
export async function assertHealthy(server: TestServer): Promise<void> {
  const health = await server.request("/health", { auth: false });
  assert.equal(health.status, 200);
  await health.body?.cancel();
  assert.equal((await server.exec("6 * 7")).result, 42);
}
