import assert from "node:assert/strict";
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/inMemory"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
// @ts-types="@modelcontextprotocol/sdk/types"
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import type { Answer } from "../session/answer.ts";
import type { CallRequest } from "../session/manager.ts";
import type { CallRunner } from "./binding.ts";
import { createMcpServer } from "./tools.ts";

/**
 * A runner that prints through `onOutput` while the call runs, as the session manager will once
 * the worker streams output (issue 13). Real Python runs in test/mcp_test.ts.
 */
class PrintingRunner implements CallRunner {
  exec(request: CallRequest): Promise<Answer> {
    request.onOutput?.("stdout", "step 1\n");
    request.onOutput?.("stderr", "careful\n");
    const body = '{"result":null,"stdout":"step 1\\n","stderr":"careful\\n","error":null}';
    return Promise.resolve({ body, outcome: "ok", limit: null, stateLost: false, durationMs: 1 });
  }
  reset(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {}
}

async function connected() {
  const server = createMcpServer(new PrintingRunner(), {
    returnMode: "xml",
    limits: { timeoutMs: 1000, memoryMb: 64 },
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: "t", version: "1" });
  const logs: { level: string; logger?: string; data: unknown }[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    logs.push(n.params);
  });
  await client.connect(clientSide);
  return { client, logs };
}

Deno.test("output printed during a call reaches the host as logging notifications before the result", async () => {
  const { client, logs } = await connected();
  const result = await client.callTool({ name: "run_python_code", arguments: { python_code: "" } });
  assert.deepEqual(logs, [
    { level: "info", logger: "stdout", data: "step 1\n" },
    { level: "warning", logger: "stderr", data: "careful\n" },
  ]);
  assert.match((result.content as { text: string }[])[0].text, /<output>\nstep 1\ncareful/);
  await client.close();
});

Deno.test("a host that sets the logging level to error receives no output notifications", async () => {
  const { client, logs } = await connected();
  await client.setLoggingLevel("error");
  await client.callTool({ name: "run_python_code", arguments: { python_code: "" } });
  assert.deepEqual(logs, []);
  await client.close();
});
