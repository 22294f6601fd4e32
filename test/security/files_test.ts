/**
 * Attacks on the files API: every way a request (or code the agent ran first) could make it read,
 * write or delete a file outside the session's working directory, or get a 5xx. Each must be a
 * clear 4xx JSON error, and nothing outside the working directory may change.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { startServer, type TestServer } from "../helpers/server.ts";
import { assertHealthy } from "./attempts.ts";

/** Sends a request and returns its status and JSON error (or the body's text). */
async function send(server: TestServer, path: string, init: RequestInit = {}) {
  const res = await server.request(path, init);
  const text = await res.text();
  let error: { name: string; message: string } | undefined;
  try {
    error = JSON.parse(text).error;
  } catch {
    // not JSON: a file's bytes
  }
  return { status: res.status, text, error, type: res.headers.get("content-type") ?? "" };
}

/** Sends a raw HTTP/1.1 request line as written, since fetch would normalise `..` away. */
async function raw(server: TestServer, method: string, target: string): Promise<string> {
  const { hostname, port } = new URL(server.url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const request = `${method} ${target} HTTP/1.1\r\nHost: ${hostname}\r\n` +
    `Authorization: Bearer ${server.token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;
  await conn.write(new TextEncoder().encode(request));
  let answer = "";
  const decoder = new TextDecoder();
  const buf = new Uint8Array(65536);
  for (let n; (n = await conn.read(buf)) !== null;) answer += decoder.decode(buf.subarray(0, n));
  conn.close();
  return answer;
}

function assertRefused(
  got: { status: number; error?: { message: string } },
  status: number,
  why?: RegExp,
) {
  assert.equal(got.status, status, JSON.stringify(got));
  assert.ok(got.error, "a JSON error body");
  if (why) assert.match(got.error!.message, why);
}

Deno.test("the files API never reaches a file outside the working directory", async (t) => {
  await using server = await startServer({ policyText: "limits:\n  timeoutMs: 5000\n" });
  // A marker outside the working directory the attacks try to read, overwrite or delete.
  await server.exec("open('/tmp/secret.txt', 'w').write('outside')");
  const outsideIntact = async () => {
    const answer = await server.exec(
      "import os\n(open('/tmp/secret.txt').read(), sorted(os.listdir('/tmp')), os.path.exists('/home/evil'))",
    );
    assert.deepEqual(answer.result, ["outside", ["secret.txt"], false]);
  };

  await t.step("'..' segments are refused, however they are spelled", async () => {
    for (const path of ["/files/..%2Ftmp%2Fsecret.txt", "/files/%2e%2e/%2e%2e/tmp/secret.txt"]) {
      const got = await send(server, path);
      assert.ok(got.status >= 400 && got.status < 500, `${path}: ${got.status}`);
      assert.doesNotMatch(got.text, /outside/);
    }
    assertRefused(await send(server, "/files/..%2Fevil", { method: "PUT", body: "x" }), 400);
    // Sent raw: the server's URL parsing resolves `..` before routing, so no files route sees it.
    for (const target of ["/files/../../tmp/secret.txt", "/files/a/../../../tmp/secret.txt"]) {
      const answer = await raw(server, "GET", target);
      assert.match(answer, /^HTTP\/1\.1 4\d\d /, target);
      assert.doesNotMatch(answer, /outside/);
    }
    assert.match(await raw(server, "PUT", "/files/../evil"), /^HTTP\/1\.1 4\d\d /);
    await outsideIntact();
  });

  await t.step("dot segments and backslashes sent as-is are 400 and write nothing", async () => {
    // fetch() resolves `.` and `..` before sending; a raw client (curl --path-as-is) does not.
    const { id } = await (await server.request("/v1/sessions", {
      method: "POST",
      body: "{}",
    })).json();
    const before = await server.exec("import os\nsorted(os.listdir('.'))");
    for (const base of ["/files", `/v1/sessions/${id}/files`]) {
      for (
        const name of [
          "../etc/passwd",
          "./m.txt",
          "sub/../x.txt",
          "sub/./y.txt",
          "%2e%2e/z.txt",
          "%2e/w.txt",
          "sub/%2E%2E/v.txt",
          "a\\b.txt",
          "%5c..%5cu.txt",
        ]
      ) {
        for (const method of ["PUT", "GET", "DELETE"]) {
          const answer = await raw(server, method, `${base}/${name}`);
          assert.match(answer, /^HTTP\/1\.1 400 /, `${method} ${base}/${name}: ${answer}`);
        }
      }
    }
    assert.deepEqual(
      (await server.exec("import os\nsorted(os.listdir('.'))")).result,
      before.result,
    );
    const named = await server.request(`/v1/sessions/${id}/files`);
    assert.deepEqual((await named.json()).files, []);
    await outsideIntact();
  });

  await t.step("absolute paths are refused", async () => {
    assertRefused(await send(server, "/files//tmp/secret.txt"), 400, /absolute/);
    assertRefused(await send(server, "/files/%2Ftmp%2Fsecret.txt"), 400, /encoded '\/'/);
    assertRefused(await send(server, "/files//home/evil", { method: "PUT", body: "x" }), 400);
    assertRefused(await send(server, "/files//tmp/secret.txt", { method: "DELETE" }), 400);
    await outsideIntact();
  });

  await t.step(
    "a symbolic link the code made to a directory outside is never followed",
    async () => {
      await server.exec("import os\nos.symlink('/tmp', 'x')\nos.symlink('..', 'up')");
      assertRefused(await send(server, "/files/x/secret.txt"), 400, /'x' is a symbolic link/);
      assertRefused(await send(server, "/files/x/evil", { method: "PUT", body: "x" }), 400);
      assertRefused(await send(server, "/files/x/secret.txt", { method: "DELETE" }), 400);
      assertRefused(await send(server, "/files/up/pyodide/x/secret.txt"), 400, /symbolic link/);
      assertRefused(await send(server, "/files/x"), 400, /symbolic link/);
      await outsideIntact();
    },
  );

  await t.step(
    "a symbolic link to a file outside can be neither read, overwritten nor deleted",
    async () => {
      await server.exec("os.symlink('/tmp/secret.txt', 'p')\nos.symlink('p', 'pp')");
      for (const name of ["p", "pp"]) {
        assertRefused(await send(server, `/files/${name}`), 400, /symbolic link/);
        assertRefused(await send(server, `/files/${name}`, { method: "PUT", body: "x" }), 400);
        assertRefused(await send(server, `/files/${name}`, { method: "DELETE" }), 400);
      }
      const list = JSON.parse((await send(server, "/files")).text);
      assert.deepEqual(list.files, [], "links are not listed as files");
      await outsideIntact();
    },
  );

  await t.step("a working directory the code replaced with a link is refused", async () => {
    await server.exec(
      "os.chdir('/')\nos.rename('/home/pyodide', '/home/old')\nos.symlink('/tmp', '/home/pyodide')",
    );
    assertRefused(await send(server, "/files/secret.txt"), 409, /working directory/);
    assertRefused(await send(server, "/files/evil", { method: "PUT", body: "x" }), 409);
    assertRefused(await send(server, "/files"), 409);
    await outsideIntact();
    await server.exec(
      "os.remove('/home/pyodide')\nos.rename('/home/old', '/home/pyodide')\nos.chdir('/home/pyodide')",
    );
  });

  await t.step("NUL bytes and control characters in names are refused", async () => {
    assertRefused(await send(server, "/files/secret.txt%00.csv"), 400, /NUL/);
    assertRefused(await send(server, "/files/a%00b", { method: "PUT", body: "x" }), 400, /NUL/);
    assertRefused(await send(server, "/files/a%0Ab", { method: "PUT", body: "x" }), 400, /control/);
    assertRefused(await send(server, "/files/%ff", { method: "PUT", body: "x" }), 400, /UTF-8/);
  });

  await t.step("over-long names are refused", async () => {
    assertRefused(
      await send(server, `/files/${"a".repeat(256)}`, { method: "PUT", body: "x" }),
      400,
      /255/,
    );
    const deep = Array(400).fill("abc").join("/");
    assertRefused(await send(server, `/files/${deep}`, { method: "PUT", body: "x" }), 400, /1024/);
    const huge = await send(server, `/files/${"a".repeat(60_000)}`);
    assert.ok(huge.status >= 400 && huge.status < 500, `${huge.status}`);
  });

  await t.step("names that differ only by Unicode normalisation are never two files", async () => {
    const nfc = "r\u00e9sum\u00e9.txt";
    const nfd = nfc.normalize("NFD");
    assertRefused(
      await send(server, `/files/${encodeURIComponent(nfd)}`, { method: "PUT", body: "x" }),
      400,
      /NFC/,
    );
    assert.equal(
      (await send(server, `/files/${encodeURIComponent(nfc)}`, { method: "PUT", body: "1" }))
        .status,
      201,
    );
    // The code makes the NFD twin: the API refuses to guess which one a name means.
    await server.exec(
      `open(${JSON.stringify(nfd)}, 'w').write('2')\nos.remove(${JSON.stringify(nfc)})`,
    );
    assertRefused(
      await send(server, `/files/${encodeURIComponent(nfc)}`, { method: "PUT", body: "3" }),
      409,
      /Unicode normalisation/,
    );
    assertRefused(await send(server, `/files/${encodeURIComponent(nfc)}`), 409);
    const answer = await server.exec("sorted(n for n in os.listdir('.') if n.startswith('r'))");
    assert.deepEqual(answer.result, [nfd], "the code's file is untouched, and no twin was made");
  });

  await t.step("a session that does not exist is a 404 for every operation", async () => {
    const base = "/v1/sessions/no-such-session/files";
    assertRefused(await send(server, base), 404);
    assertRefused(await send(server, `${base}/a.txt`, { method: "PUT", body: "x" }), 404);
    assertRefused(await send(server, `${base}/a.txt`), 404);
    assertRefused(await send(server, `${base}/a.txt`, { method: "DELETE" }), 404);
  });

  await t.step("fuzzed file paths never get a 5xx nor anything from outside", async () => {
    const segment = fc.oneof(
      fc.constantFrom("..", ".", "", "%2e%2e", "%2F", "%00", "x", "p", "up", "%c3%a9", "%ZZ"),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        async (parts, put) => {
          const got = await send(
            server,
            `/files/${parts.join("/")}`,
            put ? { method: "PUT", body: "f" } : {},
          );
          assert.ok(got.status < 500, `${parts.join("/")}: ${got.status} ${got.text}`);
          assert.doesNotMatch(got.text, /outside/);
        },
      ),
      { numRuns: 150 },
    );
    await outsideIntact();
    await assertHealthy(server);
  });
});

Deno.test("uploads over the policy's file limits get 413 and write nothing", async (t) => {
  await using server = await startServer({
    policyText:
      "limits:\n  memoryMb: 64\n  fileBytes: 4096\n  filesBytes: 10000\n  bodyBytes: 65536\n",
  });
  const put = (path: string, body: BodyInit, headers: Record<string, string> = {}) =>
    send(server, path, { method: "PUT", body, headers });

  await t.step("a file over limits.fileBytes gets 413", async () => {
    assertRefused(await put("/files/big.bin", new Uint8Array(4097)), 413, /limits\.fileBytes/);
    assert.equal((await put("/files/ok.bin", new Uint8Array(4096))).status, 201);
  });
  await t.step("a streamed body without a length over limits.fileBytes gets 413", async () => {
    const body = new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(1000));
        c.close();
      },
    });
    assertRefused(await put("/files/streamed.bin", body), 413);
  });
  await t.step("a body over limits.bodyBytes gets 413 before any file is written", async () => {
    assertRefused(await put("/files/huge.bin", new Uint8Array(70_000)), 413);
  });
  await t.step("uploads past limits.filesBytes get 413, counting what the code wrote", async () => {
    assert.equal((await put("/files/two.bin", new Uint8Array(4000))).status, 201);
    await server.exec("open('mine.bin', 'wb').write(bytes(1500))");
    assertRefused(await put("/files/three.bin", new Uint8Array(1000)), 413, /limits\.filesBytes/);
    // Replacing a file counts its new size only.
    assert.equal((await put("/files/two.bin", new Uint8Array(3000))).status, 200);
  });
  await t.step("nothing refused was written", async () => {
    const list = JSON.parse((await send(server, "/files")).text);
    assert.deepEqual(list.files.map((f: { path: string }) => f.path), [
      "mine.bin",
      "ok.bin",
      "two.bin",
    ]);
    assert.equal(list.totalBytes, 4096 + 3000 + 1500);
  });
});

Deno.test("files count within the interpreter's memory limit", async () => {
  await using server = await startServer({
    policyText:
      "limits:\n  memoryMb: 64\n  fileBytes: 50331648\n  filesBytes: 67108864\n  bodyBytes: 67108864\n",
  });
  // The interpreter's own memory (~30 MB) and a 40 MB file do not fit in 64 MiB together.
  const got = await send(server, "/files/big.bin", {
    method: "PUT",
    body: new Uint8Array(40 * 1024 * 1024),
  });
  assertRefused(got, 413, /limits\.memoryMb/);
  assert.equal(
    (await send(server, "/files/small.bin", { method: "PUT", body: new Uint8Array(1 << 20) }))
      .status,
    201,
  );
});
