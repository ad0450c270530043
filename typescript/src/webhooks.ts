/**
 * Verifying the webhooks `inloop serve` sends (`notify: ["webhook:NAME"]`).
 *
 * Each request carries Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
 * `webhook-signature`) signed with the endpoint's own `whsec_...` secret (see
 * `docs/channels.md`). The check itself is the core's; this module only reads the headers.
 *
 * ```ts
 * import { verifyWebhook } from "inloop";
 * verifyWebhook(secret, request.headers, rawBody); // throws if forged, altered or stale
 * // then deduplicate on the webhook-id header
 * ```
 * @module
 */
import { fromNative } from "./errors.js";
import { native } from "./native.js";

/** Request headers: a fetch `Headers`, or a plain object (as Node's `IncomingMessage` has). */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

function header(headers: WebhookHeaders, name: string): string {
  if (typeof (headers as Headers).get === "function") {
    return (headers as Headers).get(name) ?? "";
  }
  for (const [key, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (key.toLowerCase() === name) {
      return Array.isArray(value) ? value.join(" ") : (value ?? "");
    }
  }
  return "";
}

/** Options of {@link verifyWebhook}. */
export interface VerifyWebhookOptions {
  /** How far (seconds) the timestamp may be from now; default 300. */
  toleranceSecs?: number;
}

/**
 * Checks a webhook request's signature and timestamp. `body` must be the raw request body,
 * exactly as received. Throws an `InloopError` with `code === "unauthorized"` when the request
 * does not verify (forged, altered, stale, missing headers), and `InvalidArgument` when
 * `secret` is not a `whsec_` secret.
 */
export function verifyWebhook(
  secret: string,
  headers: WebhookHeaders,
  body: string | Uint8Array,
  options: VerifyWebhookOptions = {},
): void {
  const raw = typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body);
  try {
    native().verifyWebhook(
      secret,
      header(headers, "webhook-id"),
      header(headers, "webhook-timestamp"),
      header(headers, "webhook-signature"),
      raw,
      options.toleranceSecs ?? 300,
    );
  } catch (e) {
    throw fromNative(e);
  }
}
