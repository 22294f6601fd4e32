/**
 * `limits.filesBytes` holds for every byte a session's files hold, wherever the code writes them,
 * and those bytes count as the session's memory. A write past the limit is Python's OSError
 * (ENOSPC): the session lives. Attacked from Python and through the files API.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

const MB = 1024 * 1024;
const POLICY = "limits:\n  poolSize: 1\n  memoryMb: 256\n  fileBytes: 8388608\n" +
  "  filesBytes: 8388608\n";

Deno.test("every byte of a session's files counts against limits.filesBytes", async (t) => {
  await using server = await startServer({ policyText: POLICY });
  const id = await server.createSession();
  const run = async (code: string) => {
    const answer = await server.exec(code, { session: id });
    assert.equal(answer.error, null, answer.error?.message);
    return answer.result;
  };

  await t.step("a file in /tmp counts, and a write past the limit is OSError", async () => {
    await run("open('/tmp/a', 'wb').write(b'x' * 6_000_000)");
    const refused = await run(
      "import errno\ntry:\n    open('/tmp/b', 'wb').write(b'y' * 4_000_000)\n    r = 'written'\n" +
        "except OSError as e:\n    r = errno.errorcode[e.errno]\nr",
    );
    assert.equal(refused, "ENOSPC");
    const details = await server.request(`/v1/sessions/${id}`).then((r) => r.json());
    assert.ok(details.memoryBytes >= 6_000_000 + 16 * MB, JSON.stringify(details));
  });

  await t.step("a write far past the end of a file is OSError, not a crash", async () => {
    const result = await run(
      "import errno\ntry:\n    f = open('/tmp/c', 'wb')\n    f.seek(2**33)\n    f.write(b'x')\n" +
        "    f.close()\n    r = 'written'\nexcept OSError as e:\n    r = errno.errorcode[e.errno]\nr",
    );
    assert.equal(result, "ENOSPC");
    assert.equal(await run("6 * 7"), 42);
  });

  await t.step("deleting a file gives its bytes back", async () => {
    await run("import os\nos.remove('/tmp/a')\nopen('/tmp/b', 'wb').write(b'y' * 4_000_000)");
  });

  await t.step("a file moved out of the working directory still counts for uploads", async () => {
    await run("import os\nos.rename('/tmp/b', '/tmp/moved')");
    const res = await fetch(`${server.url}/v1/sessions/${id}/files/big.bin`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${server.token}` },
      body: new Uint8Array(5 * MB),
    });
    const body = await res.json();
    assert.equal(res.status, 413, JSON.stringify(body));
    assert.match(body.error.message, /limits\.filesBytes/);
  });
});
