// Script injection in headless Chromium: a task whose title, payload (keys and values),
// response schema (titles, descriptions, enum options, defaults), answer note and cancel reason
// are all hostile markup is shown in the queue, on its task page (form included) and in the
// audit timeline. Nothing runs: no dialog, no console error (CSP violations included), no
// request leaves for another URL, no element is made from the payload, and the text reads
// exactly as written.
//
// Needs: INLOOP_BIN (the `inloop` binary) and Chromium at INLOOP_CHROMIUM or /usr/bin/chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startServer as serve } from "./server.mjs";

const BIN = process.env.INLOOP_BIN;
const CHROMIUM = process.env.INLOOP_CHROMIUM ?? "/usr/bin/chromium";
const PASSWORD = "correct horse battery";

// Each would run a script if it were ever markup, an attribute or a URL.
const EVIL = [
  `<img src=x onerror="alert('img')">`,
  `</script><script>alert('script')</script>`,
  `"><svg onload="alert('svg')">`,
  `javascript:alert('url')`,
  `' onmouseover='alert(1)' x='`,
];

function inloop(dbUrl, args) {
  return execFileSync(BIN, args, { env: { ...process.env, INLOOP_DATABASE_URL: dbUrl }, encoding: "utf8" });
}

test("hostile markup in every field never runs and reads as text", { timeout: 120000 }, async (t) => {
  assert.ok(BIN, "set INLOOP_BIN to the inloop binary");
  const dir = mkdtempSync(join(tmpdir(), "inloop-xss-"));
  const dbUrl = `sqlite:${join(dir, "inloop.db")}`;
  const [img, script, svg, url, attr] = EVIL;
  const schema = {
    type: "object",
    title: svg,
    description: script,
    required: ["approved"],
    properties: {
      approved: { type: "boolean", title: img, description: url },
      choice: { type: "string", title: attr, enum: EVIL, description: img },
      note: { type: "string", title: script, default: svg, description: attr },
      nested: { type: "object", title: url, properties: { deep: { type: "string", title: img, default: url } } },
    },
  };
  const payload = Object.fromEntries(EVIL.map((e, i) => [e, { [`k${i}`]: e, list: EVIL, link: url }]));
  const created = JSON.parse(
    inloop(dbUrl, [
      "tasks", "create", "--title", `Refund ${img} ${script}`, "--key", "xss-1",
      "--payload", JSON.stringify(payload), "--response-schema", JSON.stringify(schema), "--json",
    ]),
  );
  const id = created.task?.id ?? created.id;
  // A second task, answered with a hostile note, and a third cancelled for a hostile reason.
  const second = JSON.parse(
    inloop(dbUrl, ["tasks", "create", "--title", svg, "--key", "xss-2", "--response-schema", JSON.stringify(schema), "--json"]),
  );
  const secondId = second.task?.id ?? second.id;
  inloop(dbUrl, ["tasks", "answer", secondId, JSON.stringify({ approved: true, note: img, choice: script }), "--by", attr]);
  const third = JSON.parse(
    inloop(dbUrl, ["tasks", "create", "--title", attr, "--key", "xss-3", "--response-schema", JSON.stringify(schema), "--json"]),
  );
  inloop(dbUrl, ["tasks", "cancel", third.task?.id ?? third.id, "--reason", script, "--by", img]);

  const server = await serve(BIN, dbUrl);
  t.after(() => server.proc.kill("SIGTERM"));
  const origin = new URL(server.url).origin;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const problems = [];
  page.on("dialog", async (d) => {
    problems.push(`dialog: ${d.message()}`);
    await d.dismiss();
  });
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(origin)) problems.push(`request to ${r.url()}`);
    else if (!/^\/(tasks|static|setup|events|login|favicon\.ico)/.test(new URL(r.url()).pathname)) {
      problems.push(`request to ${r.url()}`);
    }
  });

  await page.goto(server.setup);
  await page.fill('input[name="name"]', "ada");
  await page.fill('input[name="email"]', "ada@example.com");
  await page.fill('input[name="password"]', PASSWORD);
  await page.fill('input[name="password2"]', PASSWORD);
  await Promise.all([page.waitForURL("**/tasks"), page.click('button[type="submit"]')]);

  const noInjectedElements = async (where) => {
    const found = await page.evaluate(() => ({
      img: document.querySelectorAll("img").length,
      svg: document.querySelectorAll("svg").length,
      scripts: [...document.querySelectorAll("script")].map((s) => s.getAttribute("src")),
      jsLinks: document.querySelectorAll('a[href^="javascript:"], [src^="javascript:"]').length,
      handlers: [...document.querySelectorAll("*")].filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length,
    }));
    assert.deepEqual(found, { img: 0, svg: 0, scripts: ["/static/app.js"], jsLinks: 0, handlers: 0 }, where);
  };

  // The queue, every status.
  await page.goto(`${server.url}/tasks?status=all`);
  const queue = await page.textContent("main");
  for (const e of [img, script, svg, attr]) assert.ok(queue.includes(e.trim()), `the queue shows ${e} as text`);
  await noInjectedElements("queue");

  // The task page: payload, form (labels, hints, options, defaults), audit.
  await page.goto(`${server.url}/tasks/${id}`);
  const main = await page.textContent("main");
  for (const e of EVIL) assert.ok(main.includes(e), `the task page shows ${e} as text`);
  assert.equal(await page.inputValue('[name="/note"]'), svg, "a default is a value, not markup");
  await noInjectedElements("task page");
  // Submitting the form (the hostile default included) re-renders it with the core's answer.
  await page.check('input[name="/approved"][value="true"]');
  await Promise.all([page.waitForLoadState("load"), page.click("text=Submit answer")]);
  await noInjectedElements("after the answer");

  // The answered and the cancelled tasks: note, who, reason.
  await page.goto(`${server.url}/tasks/${secondId}`);
  const answered = await page.textContent("main");
  assert.ok(answered.includes(img) && answered.includes(attr), "the answer and who gave it read as text");
  await noInjectedElements("answered task");
  await page.goto(`${server.url}/tasks/${third.task?.id ?? third.id}`);
  assert.ok((await page.textContent("main")).includes(script.trim()), "the cancel reason reads as text");
  await noInjectedElements("cancelled task");

  assert.equal(await page.evaluate(() => typeof window.alert), "function");
  assert.deepEqual(problems, [], "nothing ran, nothing was fetched from elsewhere");
});
