// The dashboard in real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core): first-run setup, an agent's task appearing live, the generated form with
// an invalid value refused inline, an answer rejected by the task's verification rule (the
// reason shown, the form kept), the answer, the agent resuming with the typed answer, the
// audit timeline, sign-out and sign-in, and a phone-sized queue. Screenshots of the queue and
// the task page go to $INLOOP_ARTIFACTS (default tests/browser/artifacts).
//
// Needs: INLOOP_BIN (the `inloop` binary), a Python with the inloop package on PATH
// (`python`), and Chromium at INLOOP_CHROMIUM or /usr/bin/chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer as serve } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.INLOOP_BIN;
const ARTIFACTS = process.env.INLOOP_ARTIFACTS ?? join(here, "artifacts");
const CHROMIUM = process.env.INLOOP_CHROMIUM ?? "/usr/bin/chromium";
const PASSWORD = "correct horse battery";

/** Runs the Python agent; resolves with its stdout when it exits 0. */
function startAgent(dbUrl) {
  const proc = spawn("python", [join(here, "agent.py"), dbUrl], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  proc.stdout.on("data", (c) => (out += c));
  const done = new Promise((resolve, reject) => {
    proc.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`agent exited ${code}: ${out}`))));
  });
  return { proc, done };
}

test("first run, live queue, generated form, answer, agent resumes, audit", { timeout: 120000 }, async (t) => {
  assert.ok(BIN, "set INLOOP_BIN to the inloop binary");
  mkdirSync(ARTIFACTS, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "inloop-browser-"));
  const dbUrl = `sqlite:${join(dir, "inloop.db")}`;
  const server = await serve(BIN, dbUrl);
  t.after(() => server.proc.kill("SIGTERM"));

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  // Script errors and CSP violations fail the test; HTTP error statuses the test provokes
  // (a wrong password, a refused answer) are reported by Chromium as "Failed to load
  // resource" and are expected.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  // First run: the setup link creates the admin and signs them in.
  await page.goto(server.setup);
  await page.fill('input[name="name"]', "ada");
  await page.fill('input[name="email"]', "ada@example.com");
  await page.fill('input[name="password"]', PASSWORD);
  await page.fill('input[name="password2"]', PASSWORD);
  await Promise.all([page.waitForURL("**/tasks"), page.click('button[type="submit"]')]);
  assert.match(await page.textContent("body"), /ada/);

  // The agent asks; the open queue shows the task without a reload (server-sent events).
  const agent = startAgent(dbUrl);
  t.after(() => agent.proc.kill("SIGKILL"));
  await page.waitForSelector("text=Refund order A-1042?", { timeout: 20000 });
  await page.screenshot({ path: join(ARTIFACTS, "queue.png"), fullPage: true });

  // The task page: payload shown as text (its markup escaped), the form generated from the
  // Pydantic model's schema.
  await Promise.all([page.waitForURL(/\/tasks\/[0-9a-f-]+$/), page.click("text=Refund order A-1042?")]);
  const body = await page.textContent("main");
  assert.match(body, /A-1042/);
  assert.match(body, /Arrived <b>broken<\/b>/, "the payload's markup is shown as text");
  assert.equal(await page.locator("main b").count(), 0, "no markup from the payload");
  for (const name of ["/approved", "/amount", "/category", "/comment"]) {
    assert.ok(await page.locator(`[name="${name}"]`).count() > 0, `a control for ${name}`);
  }
  await page.screenshot({ path: join(ARTIFACTS, "task.png"), fullPage: true });

  // An invalid amount: refused by the core, shown next to the field, the rest kept.
  await page.check('input[name="/approved"][value="true"]');
  await page.fill('input[name="/amount"]', "9999");
  await page.locator('[name="/category"]').first().check().catch(async () => {
    await page.selectOption('select[name="/category"]', "damaged");
  });
  await page.fill('[name="/comment"]', "Sorry about that");
  await Promise.all([page.waitForLoadState("load"), page.click("text=Submit answer")]);
  const amountField = page.locator('input[name="/amount"]');
  assert.equal(await amountField.getAttribute("aria-invalid"), "true");
  assert.match(await page.textContent("main"), /500/);
  assert.equal(await amountField.inputValue(), "9999", "the typed value is kept");
  assert.equal(await page.locator('[name="/comment"]').inputValue(), "Sorry about that");
  await page.screenshot({ path: join(ARTIFACTS, "task-invalid.png"), fullPage: true });

  // Within the schema but over the order's amount: the task's verification rule rejects
  // it; the reason is shown and the form keeps what was typed.
  await page.fill('input[name="/amount"]', "200");
  await Promise.all([page.waitForLoadState("load"), page.click("text=Submit answer")]);
  assert.match(await page.textContent("main"), /may not exceed the order's amount/);
  assert.equal(await page.locator('input[name="/amount"]').inputValue(), "200");
  assert.equal(await page.locator('[name="/comment"]').inputValue(), "Sorry about that");
  await page.screenshot({ path: join(ARTIFACTS, "task-rejected.png"), fullPage: true });

  // A valid answer: accepted, the agent resumes with the typed decision.
  await page.fill('input[name="/amount"]', "120");
  await Promise.all([page.waitForURL(/done=answered/), page.click("text=Submit answer")]);
  const printed = JSON.parse((await agent.done).trim());
  assert.deepEqual(printed, { approved: true, amount: 120, category: "damaged", comment: "Sorry about that" });

  // The audit timeline shows the refusal and the answer, by whom and through which channel.
  const timeline = await page.textContent("#task-audit");
  assert.match(timeline, /Answer refused/);
  assert.match(timeline, /Answer accepted/);
  assert.match(timeline, /ada/);
  assert.match(timeline, /dashboard/);
  await page.screenshot({ path: join(ARTIFACTS, "task-answered.png"), fullPage: true });

  // Sign out, sign back in (the form returns to where it was asked for).
  await Promise.all([page.waitForURL("**/login"), page.click("text=Sign out")]);
  await page.goto(`${server.url}/tasks?status=all`);
  await page.waitForURL(/\/login\?next=/);
  await page.fill('input[name="username"]', "ada");
  await page.fill('input[name="password"]', "wrong password!!");
  await page.click('button[type="submit"]');
  assert.match(await page.textContent("body"), /wrong user name or password/);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForURL(/\/tasks\?status=all$/), page.click('button[type="submit"]')]);
  assert.match(await page.textContent("main"), /Refund order A-1042\?/);

  // On a phone: the queue still reads (no horizontal scrolling).
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `no horizontal scroll on a phone (overflow ${overflow}px)`);
  await page.screenshot({ path: join(ARTIFACTS, "queue-phone.png"), fullPage: true });

  assert.deepEqual(consoleErrors, [], "no console errors (CSP violations included)");
});
