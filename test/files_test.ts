/**
 * The files API as users see it: upload, use from Python, download, list, delete, in the
 * default session and named ones, in order with the session's calls.
 */
import assert from "node:assert/strict";
import { startServer } from "./helpers/server.ts";

Deno.test("files move in and out of a session's working directory", async (t) => {
  await using server = await startServer();
  const id = await server.createSession();
  const base = `/v1/sessions/${id}/files`;

  await t.step("an uploaded file is an ordinary file in Python's working directory", async () => {
    const res = await server.request(`${base}/data.csv`, {
      method: "PUT",
      body: "a,b\n1,2\n3,4\n",
    });
    assert.equal(res.status, 201);
    const body = await res.json();
    assert.equal(body.created, true);
    assert.equal(body.file.path, "data.csv");
    assert.equal(body.file.size, 12);
    const answer = await server.exec(
      "import csv, os\n(os.getcwd(), [r for r in csv.DictReader(open('data.csv'))])",
      { session: id },
    );
    assert.deepEqual(answer.result, ["/home/pyodide", [{ a: "1", b: "2" }, { a: "3", b: "4" }]]);
  });

  await t.step(
    "a file the code writes can be downloaded, with a content type from its name",
    async () => {
      await server.exec(
        "import json\njson.dump({'ok': True}, open('out.json', 'w'))\nopen('img.png', 'wb').write(bytes(range(256)))",
        { session: id },
      );
      const res = await server.request(`${base}/out.json`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.match(
        res.headers.get("content-disposition")!,
        /attachment; filename\*=UTF-8''out\.json/,
      );
      assert.deepEqual(await res.json(), { ok: true });
      const png = await server.request(`${base}/img.png`);
      assert.equal(png.headers.get("content-type"), "image/png");
      assert.deepEqual(
        new Uint8Array(await png.arrayBuffer()),
        Uint8Array.from({ length: 256 }, (_, i) => i),
      );
    },
  );

  await t.step("binary uploads come back byte for byte, in nested directories", async () => {
    const bytes = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7919) % 251);
    const put = await server.request(`${base}/deep/er/r%C3%A9sum%C3%A9.bin`, {
      method: "PUT",
      body: bytes,
    });
    assert.equal(put.status, 201);
    assert.equal((await put.json()).file.path, "deep/er/résumé.bin");
    const res = await server.request(`${base}/deep/er/r%C3%A9sum%C3%A9.bin`);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
    const answer = await server.exec("len(open('deep/er/résumé.bin', 'rb').read())", {
      session: id,
    });
    assert.equal(answer.result, 100_000);
  });

  await t.step("replacing a file answers 200 with created false", async () => {
    const res = await server.request(`${base}/data.csv`, { method: "PUT", body: "x\n" });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).created, false);
  });

  await t.step("the listing has every file with its size and modification time", async () => {
    const res = await server.request(base);
    assert.equal(res.status, 200);
    const list = await res.json();
    assert.deepEqual(list.files.map((f: { path: string; size: number }) => [f.path, f.size]), [
      ["data.csv", 2],
      ["deep/er/résumé.bin", 100_000],
      ["img.png", 256],
      ["out.json", 12],
    ]);
    for (const f of list.files) assert.ok(!Number.isNaN(Date.parse(f.modified)), f.modified);
    assert.equal(list.totalBytes, 2 + 100_000 + 256 + 12);
    assert.equal(typeof list.limitBytes, "number");
    assert.equal(list.truncated, false);
  });

  await t.step("a deleted file is gone for Python and for the API", async () => {
    const res = await server.request(`${base}/out.json`, { method: "DELETE" });
    assert.deepEqual(await res.json(), { deleted: "out.json" });
    const gone = await server.request(`${base}/out.json`);
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).error.name, "FileNotFound");
    const answer = await server.exec("import os\nos.path.exists('out.json')", { session: id });
    assert.equal(answer.result, false);
  });

  await t.step("a directory is not a file", async () => {
    const res = await server.request(`${base}/deep`);
    assert.equal(res.status, 400);
    assert.match((await res.json()).error.message, /is a directory/);
  });

  await t.step(
    "the default session's files are under /files, apart from other sessions",
    async () => {
      assert.equal(
        (await server.request("/files/mine.txt", { method: "PUT", body: "default" })).status,
        201,
      );
      assert.equal((await server.exec("open('mine.txt').read()")).result, "default");
      assert.equal((await server.request(`${base}/mine.txt`)).status, 404);
      assert.equal(await (await server.request("/files/mine.txt")).text(), "default");
      const list = await (await server.request("/files")).json();
      assert.deepEqual(list.files.map((f: { path: string }) => f.path), ["mine.txt"]);
    },
  );

  await t.step("files are part of the session's state: a reset clears them", async () => {
    await server.request(`/v1/sessions/${id}/reset`, { method: "POST" });
    const list = await (await server.request(base)).json();
    assert.deepEqual(list.files, []);
  });
});

Deno.test("a file request waits behind the call that is running", async () => {
  await using server = await startServer();
  const id = await server.createSession();
  const call = server.exec(
    "import time\ntime.sleep(0.5)\nopen('late.txt', 'w').write('written by the call')",
    {
      session: id,
    },
  );
  // Sent once the call runs: it queues behind it, so it sees the call's file.
  while (!(await (await server.request(`/v1/sessions/${id}`)).json()).busy) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const res = await server.request(`/v1/sessions/${id}/files/late.txt`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "written by the call");
  assert.equal((await call).error, null);
});
