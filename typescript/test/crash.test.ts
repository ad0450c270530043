import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { scenario, taskByKey } from "./helpers.js";

const AGENT = fileURLToPath(new URL("./agent.js", import.meta.url));

function start(url: string, namespace: string, key: string): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> } {
  const child = spawn(process.execPath, [AGENT, url, namespace, key], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, out, err })),
  );
  return { child, done };
}

scenario(
  "crash: SIGKILL the waiting agent, answer, rerun with the same key (x5)",
  async (env) => {
    const human = env.client();
    for (let i = 0; i < 5; i++) {
      const key = `deploy-${i}`;
      const first = start(env.url, env.namespace, key);
      const task = await taskByKey(human, key, 15_000);
      assert.equal(task.status, "pending");
      first.child.kill("SIGKILL");
      const r1 = await first.done;
      assert.equal(r1.signal, "SIGKILL", r1.err);
      assert.equal(r1.out, "");

      await human.answer(task.id, { approved: i % 2 === 0, note: `run ${i}` }, { by: "oncall" });

      const second = start(env.url, env.namespace, key);
      const r2 = await second.done;
      assert.equal(r2.code, 0, r2.err);
      const line = JSON.parse(r2.out.trim()) as { decision: unknown };
      assert.deepEqual(line.decision, { approved: i % 2 === 0, note: `run ${i}` });
      const page = await human.list({ keyPrefix: key });
      assert.equal(page.items.length, 1);
      assert.equal(page.items[0]!.id, task.id);
    }
  },
  60_000,
);
