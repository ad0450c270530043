// The Claude Agent SDK adapter (`inloop/claude-agent`) on SQLite and PostgreSQL. The callback
// contract directly (allow, allow with an edited input, deny with a message, repeats, a restart
// finding its task, timeouts, an abort, the core's verification and an SDK verifier, bad input),
// and the real SDK running its bundled CLI against the loopback fake of the Anthropic Messages
// API (tests/fakes/anthropic_messages.py): the asking process is SIGKILLed while it waits, the
// person allows an edited refund, a new process runs the agent again and the refund happens
// exactly once (counted in a file).
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import type { PermissionResult } from "@anthropic-ai/claude-agent-sdk";
import { Aborted, InvalidAnswer, InvalidArgument, VerificationRejected, verifiers, type Client, type Task } from "../src/index.js";
import { humanPermissions, permissionKey } from "../src/claude-agent.js";
import { scenario, sleep } from "./helpers.js";

const CHILD = fileURLToPath(new URL("./ca_child.js", import.meta.url));
const FAKE = fileURLToPath(new URL("../../../tests/fakes/anthropic_messages.py", import.meta.url));
const REFUND = { order_id: "A-1", amount: 500 };
const TOOL = "mcp__shop__refund";

function ctx(toolUseID = "toolu_1", signal: AbortSignal = new AbortController().signal): Parameters<ReturnType<typeof humanPermissions>>[2] {
  return { signal, toolUseID, requestId: `req-${toolUseID}` };
}

async function pending(client: Client, n = 1, withinMs = 60_000): Promise<Task[]> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    const page = await client.list({ keyPrefix: "claude-agent:", status: "pending" });
    if (page.items.length >= n) return page.items;
    await sleep(20);
  }
  throw new Error(`fewer than ${n} pending permission tasks`);
}

scenario("claude-agent: allow with an edited input", async (env) => {
  const client = env.client();
  const ask = humanPermissions("run-allow", { client, notify: ["slack:#ops"] });
  const call = ask(TOOL, REFUND, ctx());
  const [task] = (await pending(client)) as [Task];
  assert.equal(task.key, permissionKey("run-allow", TOOL, REFUND, 0));
  assert.equal(task.title, `Allow ${TOOL}?`);
  assert.deepEqual(task.notify, ["slack:#ops"]);
  assert.deepEqual(task.payload, { tool: TOOL, input: REFUND, input_digest: (task.payload as { input_digest: string }).input_digest, run_id: "run-allow", repeat: 0 });
  await assert.rejects(client.answer(task.id, { behavior: "maybe" }, { by: "alice" }), InvalidAnswer);
  const edited = { order_id: "A-1", amount: 250 };
  await client.answer(task.id, { behavior: "allow", updated_input: edited }, { by: "alice" });
  assert.deepEqual(await call, { behavior: "allow", updatedInput: edited });
});

scenario("claude-agent: deny with a message; tools that do not ask", async (env) => {
  const client = env.client();
  const ask = humanPermissions("run-deny", { client, tools: [TOOL] });
  assert.deepEqual(await ask("Read", { file_path: "x" }, ctx()), { behavior: "allow", updatedInput: { file_path: "x" } });
  const call = ask(TOOL, REFUND, ctx());
  const [task] = (await pending(client)) as [Task];
  await client.answer(task.id, { behavior: "deny", message: "not eligible", interrupt: true }, { by: "bob" });
  assert.deepEqual(await call, { behavior: "deny", message: "not eligible", interrupt: true });
  // A plain allow gives the input the person saw.
  const next = ask(TOOL, { order_id: "A-2", amount: 7 }, ctx("toolu_2"));
  const [second] = (await pending(client)) as [Task];
  await client.answer(second.id, { behavior: "allow" }, { by: "bob" });
  assert.deepEqual(await next, { behavior: "allow", updatedInput: { order_id: "A-2", amount: 7 } });
});

scenario("claude-agent: repeats get their own task and a restart finds its own", async (env) => {
  const client = env.client();
  const ask = humanPermissions("run-rep", { client });
  const [first, second] = await Promise.all([ask.request(TOOL, REFUND), ask.request(TOOL, REFUND)]);
  assert.ok(first !== undefined && second !== undefined);
  assert.notEqual(first.id, second.id);
  assert.deepEqual([first, second].map((t) => (t.payload as { repeat: number }).repeat).sort(), [0, 1]);
  const zero = (first.payload as { repeat: number }).repeat === 0 ? first : second;
  await client.answer(zero.id, { behavior: "allow" }, { by: "carol" });
  // A new process (a new callback) asking the same first question gets the same task, with its
  // answer: the person is not asked twice and the decision is the one they gave.
  const again = humanPermissions("run-rep", { client });
  assert.deepEqual(await again(TOOL, REFUND, ctx("toolu_other")), { behavior: "allow", updatedInput: REFUND });
  assert.equal((await client.list({ keyPrefix: "claude-agent:" })).items.length, 2);
});

scenario("claude-agent: a timeout denies; the SDK's abort stops the wait and keeps the task", async (env) => {
  const client = env.client();
  const ask = humanPermissions("run-t", { client, timeout: 300 });
  const result = (await ask(TOOL, REFUND, ctx())) as Extract<PermissionResult, { behavior: "deny" }>;
  assert.equal(result.behavior, "deny");
  assert.match(result.message, /timed out/);
  const [task] = (await client.list({ keyPrefix: "claude-agent:" })).items as [Task];
  assert.equal(task.status, "timed_out");

  const stop = new AbortController();
  const waiting = humanPermissions("run-abort", { client })(TOOL, REFUND, ctx("toolu_a", stop.signal));
  const [open] = (await pending(client)) as [Task];
  stop.abort();
  await assert.rejects(waiting, Aborted);
  assert.equal((await client.get(open.id)).status, "pending");
});

scenario("claude-agent: the core's verification and an SDK verifier send answers back", async (env) => {
  const client = env.client();
  const rule = {
    name: "a denial needs a message",
    when: { "==": [{ var: "/answer/behavior" }, "deny"] },
    check: { nonempty: { var: "/answer/message" } },
    message: "say why",
  };
  const noBigEdits = (payload: unknown, answer: unknown): verifiers.Verdict => {
    const a = answer as { behavior: string; updated_input?: { amount: number } };
    const edited = a.updated_input ?? (payload as { input: { amount: number } }).input;
    return edited.amount > 300 && a.behavior === "allow" ? verifiers.rejected("allow at most 300") : verifiers.passed();
  };
  const ask = humanPermissions("run-v", { client, verification: verifiers.rules([rule]), verifier: noBigEdits });
  let done = false;
  const call = ask(TOOL, REFUND, ctx()).finally(() => {
    done = true;
  });
  const [task] = (await pending(client)) as [Task];
  await assert.rejects(client.answer(task.id, { behavior: "deny" }, { by: "dora" }), VerificationRejected);
  await client.answer(task.id, { behavior: "allow" }, { by: "dora" }); // 500: the verifier says no
  const until = Date.now() + 10_000;
  while (!(await client.get(task.id)).rejections.some((r) => r.verifier === "sdk:noBigEdits")) {
    assert.ok(Date.now() < until, "the verifier did not send the answer back");
    await sleep(20);
  }
  assert.equal((await client.get(task.id)).status, "pending");
  assert.equal(done, false);
  const edited = { order_id: "A-1", amount: 300 };
  await client.answer(task.id, { behavior: "allow", updated_input: edited }, { by: "dora" });
  assert.deepEqual(await call, { behavior: "allow", updatedInput: edited });
});

scenario("claude-agent: bad input", async (env) => {
  const client = env.client();
  assert.throws(() => humanPermissions("", { client }), InvalidArgument);
  assert.throws(() => humanPermissions("x".repeat(201), { client }), InvalidArgument);
  const ask = humanPermissions("r", { client });
  await assert.rejects(ask.request(TOOL, ["not", "an", "object"] as unknown as Record<string, unknown>), InvalidArgument);
  await assert.rejects(ask.request("", {}), InvalidArgument);
});

// The fake Anthropic Messages API: one process for this file, on a free loopback port.
let fake: ChildProcess | undefined;
let fakeUrl = "";
before(async () => {
  fake = spawn("python3", [FAKE], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: fake.stdout! });
  fakeUrl = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    fake!.once("exit", (code) => reject(new Error(`the fake Anthropic API exited (${code})`)));
  });
  assert.match(fakeUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
});
after(() => {
  fake?.kill("SIGTERM");
});

function exited(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve([child.exitCode, child.signalCode]);
    else child.once("exit", (code, signal) => resolve([code, signal]));
  });
}

async function runChild(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const [code] = await exited(child);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

scenario(
  "claude-agent: the real SDK and CLI, SIGKILL while waiting, a new process runs the refund once",
  async (env) => {
    const dir = mkdtempSync(join(tmpdir(), "inloop-ca-"));
    try {
      const effects = join(dir, "effects.jsonl");
      const client = env.client();
      const args = [CHILD, env.url, env.namespace, "ticket-1", fakeUrl, effects];
      // Its own process group: the SIGKILL reaches the agent and the CLI it started.
      const asker = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
      let stderr = "";
      asker.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
      let task: Task;
      try {
        [task] = (await pending(client).catch((e: unknown) => {
          throw new Error(`${String(e)}; the agent's stderr: ${stderr}`);
        })) as [Task];
        assert.deepEqual((task.payload as { input: unknown }).input, REFUND);
        process.kill(-asker.pid!, "SIGKILL");
        assert.deepEqual(await exited(asker), [null, "SIGKILL"]);
      } finally {
        try {
          process.kill(-asker.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      }
      assert.equal(existsSync(effects), false);
      const edited = { order_id: "A-1", amount: 250 };
      await client.answer(task.id, { behavior: "allow", updated_input: edited }, { by: "erin" });
      const out = await runChild(args);
      assert.equal(out.code, 0, out.stderr);
      const lines = out.stdout.trim().split("\n");
      const texts = (JSON.parse(lines[lines.length - 1] as string) as { texts: string[] }).texts;
      assert.ok(texts.includes("Done: refunded 250 on A-1"), JSON.stringify(texts));
      assert.deepEqual(
        readFileSync(effects, "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as unknown),
        [edited],
      );
      assert.equal((await client.list({ keyPrefix: "claude-agent:" })).items.length, 1); // asked once
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  240_000,
);
