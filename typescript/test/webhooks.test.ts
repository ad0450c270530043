// verifyWebhook: the core's Standard Webhooks check, from TypeScript.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { InloopError, InvalidArgument, verifyWebhook } from "../src/index.js";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

function sign(id: string, ts: number, body: string): string {
  const key = Buffer.from(SECRET.slice("whsec_".length), "base64");
  return "v1," + createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest("base64");
}

function unauthorized(f: () => void): void {
  assert.throws(f, (e: unknown) => e instanceof InloopError && e.code === "unauthorized");
}

test("the specification vector verifies, and is stale by default", () => {
  const headers = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
  };
  const body = '{"test": 2432232314}';
  verifyWebhook(SECRET, headers, body, { toleranceSecs: 1e10 });
  unauthorized(() => verifyWebhook(SECRET, headers, body));
});

test("fresh requests verify; altered ones are refused", () => {
  const now = Math.floor(Date.now() / 1000);
  const body = '{"type": "task.created"}';
  const headers = new Headers({
    "Webhook-Id": "dlv_1",
    "Webhook-Timestamp": String(now),
    "Webhook-Signature": sign("dlv_1", now, body),
  });
  verifyWebhook(SECRET, headers, body);
  verifyWebhook(SECRET, Object.fromEntries(headers), new TextEncoder().encode(body));
  unauthorized(() => verifyWebhook(SECRET, headers, '{"type": "task.ended"}'));
  const old = { "webhook-id": "dlv_1", "webhook-timestamp": String(now - 600), "webhook-signature": sign("dlv_1", now - 600, body) };
  unauthorized(() => verifyWebhook(SECRET, old, body));
  unauthorized(() => verifyWebhook(SECRET, { "webhook-id": "dlv_1" }, body));
  assert.throws(() => verifyWebhook("hunter2", headers, body), InvalidArgument);
});
