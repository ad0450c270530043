import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { z } from "zod";
import { Client, TimedOut, awaitHuman, defaultClient } from "../src/index.js";
import { taskByKey } from "./helpers.js";

test("awaitHuman without a client uses INLOOP_DATABASE_URL (one default client per namespace)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "inloop-ts-"));
  const saved = process.env["INLOOP_DATABASE_URL"];
  const url = `sqlite://${dir}/env.db`;
  process.env["INLOOP_DATABASE_URL"] = url;
  const human = new Client({ databaseUrl: url, namespace: "envns" });
  try {
    assert.equal(new Client().databaseUrl, url);
    assert.equal(defaultClient("envns"), defaultClient("envns"));
    assert.notEqual(defaultClient("envns"), defaultClient("other"));
    const pending = awaitHuman({
      title: "env?",
      payload: {},
      responseSchema: z.object({ ok: z.boolean() }),
      key: "e1",
      namespace: "envns",
    });
    const t = await taskByKey(human, "e1");
    await human.answer(t.id, { ok: true }, { by: "me" });
    assert.deepEqual(await pending, { ok: true });
    await assert.rejects(
      awaitHuman({ title: "x", payload: 0, responseSchema: { type: "boolean" }, key: "e2", timeout: 200 }),
      TimedOut,
    );
  } finally {
    await human.close();
    await defaultClient("envns").close();
    await defaultClient().close();
    if (saved === undefined) delete process.env["INLOOP_DATABASE_URL"];
    else process.env["INLOOP_DATABASE_URL"] = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("errors are typed and instanceof works across the hierarchy", async () => {
  const { InloopError, InvalidArgument, NotFound, Aborted } = await import("../src/index.js");
  const e = new NotFound("x", { details: { id: "1" } });
  assert.ok(e instanceof NotFound && e instanceof InloopError && e instanceof Error);
  assert.equal(e.code, "not_found");
  assert.equal(e.name, "NotFound");
  assert.ok(!(e instanceof InvalidArgument));
  assert.equal(new Aborted("a").code, "aborted");
});
