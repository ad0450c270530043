// The shared test vectors (tests/vectors/*.json) through the TypeScript SDK.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, Conflict, InloopError, InvalidAnswer, InvalidPayload } from "../src/index.js";

const DIR = fileURLToPath(new URL("../../../tests/vectors/", import.meta.url));
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort();

interface Expect {
  error: string;
  paths: string[];
}
interface Vector {
  name: string;
  title: string;
  payload: unknown;
  payload_schema: Record<string, unknown> | null;
  response_schema: Record<string, unknown>;
  create: "ok" | Expect;
  answers: { answer: unknown; expect: "accepted" | "conflict" | Expect }[];
}

function shape(e: InloopError): Expect {
  const paths =
    e instanceof InvalidAnswer || e instanceof InvalidPayload
      ? [...new Set(e.errors.map((f) => f.path))].sort()
      : [];
  return { error: e.code, paths };
}

test("the vector files are there", () => {
  assert.ok(FILES.length >= 5, `found ${FILES.length} in ${DIR}`);
});

for (const file of FILES) {
  test(`vector ${file}`, async () => {
    const v = JSON.parse(readFileSync(join(DIR, file), "utf8")) as Vector;
    const dir = mkdtempSync(join(tmpdir(), "inloop-vectors-"));
    const client = new Client({ databaseUrl: `sqlite://${dir}/v.db`, namespace: "vectors" });
    try {
      let taskId: string;
      try {
        const task = await client.create({
          title: v.title,
          payload: v.payload,
          ...(v.payload_schema === null ? {} : { payloadSchema: v.payload_schema }),
          responseSchema: v.response_schema,
          key: v.name,
        });
        assert.equal(v.create, "ok", "create succeeded");
        taskId = task.id;
      } catch (e) {
        if (!(e instanceof InloopError)) throw e;
        assert.deepEqual(shape(e), v.create);
        return;
      }
      let accepted: unknown = null;
      for (const [i, step] of v.answers.entries()) {
        try {
          const done = await client.answer(taskId, step.answer, { by: `person-${i}` });
          assert.equal(step.expect, "accepted", `answer ${i}`);
          assert.deepEqual(done.response, step.answer);
          accepted = step.answer;
        } catch (e) {
          if (e instanceof Conflict) {
            assert.equal(step.expect, "conflict", `answer ${i}`);
            continue;
          }
          if (!(e instanceof InloopError)) throw e;
          assert.deepEqual(shape(e), step.expect, `answer ${i}`);
          assert.equal((await client.get(taskId)).status, "pending");
        }
      }
      assert.deepEqual((await client.get(taskId)).response, accepted);
    } finally {
      await client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
