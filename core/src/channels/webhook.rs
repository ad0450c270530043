//! Webhooks: `webhook:NAME` targets POST a signed JSON event to the endpoint configured as NAME.
//!
//! The signature follows Standard Webhooks (<https://www.standardwebhooks.com>): headers
//! `webhook-id` (the delivery's idempotency key, the same on every retry), `webhook-timestamp`
//! (Unix seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{id}.{timestamp}.{body}`, keyed by the endpoint's own secret (`whsec_` + base64 of at
//! least 24 random bytes). Receivers check the signature, refuse timestamps outside their
//! tolerance and deduplicate on `webhook-id`. [`verify`] is the reference check.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{Channel, DeliveryError, Job, sign};
use crate::config::WebhookConfig;
use crate::error::{Error, Result};

/// One checked endpoint.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub url: reqwest::Url,
    key: Vec<u8>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("key", &"***")
            .finish()
    }
}

impl Endpoint {
    /// Checks a URL and a `whsec_` secret.
    pub fn new(name: &str, url: &str, secret: &str) -> Result<Endpoint> {
        let bad = |m: String| Error::Config(format!("webhook {name:?}: {m}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(bad(
                "names may only use lower-case letters, digits, - and _".into(),
            ));
        }
        let url = reqwest::Url::parse(url).map_err(|e| bad(format!("url {url:?}: {e}")))?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(bad(format!(
                    "url {url} must use https (plain http is allowed for loopback only)"
                )));
            }
            s => return Err(bad(format!("url scheme {s:?} is not http(s)"))),
        }
        let key = parse_secret(secret).map_err(bad)?;
        Ok(Endpoint {
            name: name.to_string(),
            url,
            key,
        })
    }
}

/// Decodes a `whsec_<base64>` secret (at least 24 bytes).
pub(crate) fn parse_secret(secret: &str) -> std::result::Result<Vec<u8>, String> {
    let Some(b64) = secret.trim().strip_prefix("whsec_") else {
        return Err("the secret must look like whsec_<base64> (Standard Webhooks)".into());
    };
    let key = B64
        .decode(b64)
        .map_err(|e| format!("the secret is not valid base64 after whsec_: {e}"))?;
    if key.len() < 24 {
        return Err(format!(
            "the secret is {} bytes; use at least 24 random bytes",
            key.len()
        ));
    }
    Ok(key)
}

/// A new random secret, `whsec_` + base64 of 32 bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    format!("whsec_{}", B64.encode(bytes))
}

/// The endpoints of `[channels.webhooks.*]` merged with `INLOOP_WEBHOOK_<NAME>_URL` /
/// `_SECRET` (NAME upper-cased, `-` as `_`; the variables win). Each needs both.
pub(crate) fn resolve(
    file: &BTreeMap<String, WebhookConfig>,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Endpoint>> {
    let env_name = |name: &str| name.to_ascii_uppercase().replace('-', "_");
    let mut merged: BTreeMap<String, WebhookConfig> = file.clone();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("INLOOP_WEBHOOK_") else {
            continue;
        };
        let (upper, field) = if let Some(n) = rest.strip_suffix("_URL") {
            (n, "url")
        } else if let Some(n) = rest.strip_suffix("_SECRET") {
            (n, "secret")
        } else {
            return Err(Error::Config(format!(
                "{k}: webhook variables are INLOOP_WEBHOOK_<NAME>_URL and INLOOP_WEBHOOK_<NAME>_SECRET"
            )));
        };
        let name = merged
            .keys()
            .find(|n| env_name(n) == upper)
            .cloned()
            .unwrap_or_else(|| upper.to_ascii_lowercase());
        let entry = merged.entry(name).or_default();
        let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
        if field == "url" {
            entry.url = v.or(entry.url.take());
        } else {
            entry.secret = v.or(entry.secret.take());
        }
    }
    let mut out = BTreeMap::new();
    for (name, c) in merged {
        let upper = env_name(&name);
        let url = c.url.ok_or_else(|| {
            Error::Config(format!(
                "webhook {name:?} has no url (channels.webhooks.{name}.url or INLOOP_WEBHOOK_{upper}_URL)"
            ))
        })?;
        let secret = c.secret.ok_or_else(|| {
            Error::Config(format!(
                "webhook {name:?} has no secret (channels.webhooks.{name}.secret or INLOOP_WEBHOOK_{upper}_SECRET; \
                 `inloop channels secret` makes one)"
            ))
        })?;
        out.insert(name.clone(), Endpoint::new(&name, &url, &secret)?);
    }
    Ok(out)
}

/// The signature header value for one attempt: `v1,<base64>`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = sign::hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(mac))
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not a whsec_ secret: {0}")]
    BadSecret(String),
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now, outside the tolerance")]
    Stale(i64),
    #[error("no v1 signature matches")]
    NoMatch,
}

/// Checks a request the way a receiver should: the timestamp within `tolerance_secs` of `now`
/// (Unix seconds), and one of the space-separated `v1,` signatures matching (constant time).
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now: i64,
    tolerance_secs: i64,
) -> std::result::Result<(), VerifyError> {
    let key = parse_secret(secret).map_err(VerifyError::BadSecret)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > tolerance_secs {
        return Err(VerifyError::Stale(now - ts));
    }
    let ts = ts.to_string();
    for sig in signatures.split(' ') {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(mac) = B64.decode(b64) else { continue };
        if sign::verify_hmac_sha256(
            &key,
            &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            &mac,
        ) {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// [`verify`] against the clock, as the SDK helpers expose it: a secret that is not a
/// `whsec_` secret is [`Error::InvalidArgument`] (the caller's mistake); a request that does
/// not verify is [`Error::Unauthorized`] naming why.
pub fn verify_now(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    tolerance_secs: i64,
) -> Result<()> {
    let now = crate::model::now_ms() / 1000;
    match verify(secret, id, timestamp, body, signatures, now, tolerance_secs) {
        Ok(()) => Ok(()),
        Err(VerifyError::BadSecret(m)) => Err(Error::InvalidArgument(format!(
            "the webhook secret is not usable: {m}"
        ))),
        Err(e) => Err(Error::Unauthorized(format!(
            "webhook signature check failed: {e}"
        ))),
    }
}

/// The event body for a delivery: `{"type": "task.created" | "task.ended" | "task.reminder",
/// "timestamp", "data": {"task": ...}}` (a reminder adds `"reminder": N`), the same bytes on
/// every retry.
pub fn event_body(job: &Job<'_>) -> Vec<u8> {
    let reminder = job
        .event
        .strip_prefix("reminder.")
        .and_then(|n| n.parse::<u32>().ok());
    let at = if job.event == "ended" {
        job.task.ended_at.unwrap_or(job.task.updated_at)
    } else if let Some(n) = reminder {
        job.task
            .timers
            .iter()
            .find(|t| t.kind == crate::policy::REMINDER && t.index == n)
            .and_then(|t| t.fired_at)
            .unwrap_or(job.task.created_at)
    } else {
        job.task.created_at
    };
    let mut body = json!({
        "type": if reminder.is_some() { "task.reminder".to_string() } else { format!("task.{}", job.event) },
        "timestamp": crate::model::format_ms(at),
        "data": { "task": job.task },
    });
    if let Some(n) = reminder {
        body["reminder"] = json!(n);
    }
    serde_json::to_vec(&body).expect("a task serialises")
}

/// The webhook channel: every configured endpoint.
#[derive(Debug)]
pub struct Webhooks {
    endpoints: BTreeMap<String, Endpoint>,
    http: reqwest::Client,
}

impl Webhooks {
    pub fn new(endpoints: BTreeMap<String, Endpoint>) -> Result<Webhooks> {
        Ok(Webhooks {
            endpoints,
            http: http_client()?,
        })
    }
}

/// The HTTP client of webhooks and callbacks: 10 s per request, redirects never followed (a
/// redirect could lead anywhere, past the allow-list).
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("inloop/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("cannot build the webhook HTTP client: {e}")))
}

/// POSTs the job's event to `url`, signed with `key` the Standard Webhooks way: any 2xx is
/// delivered; anything else (or no answer) is worth a retry.
pub(crate) async fn post_signed(
    http: &reqwest::Client,
    url: &reqwest::Url,
    key: &[u8],
    job: &Job<'_>,
) -> std::result::Result<Option<Value>, DeliveryError> {
    let body = event_body(job);
    let ts = crate::model::now_ms() / 1000;
    let sig = signature(key, job.idem_key, ts, &body);
    let resp = http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", job.idem_key)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::transient(format!("POST {url}: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        Ok(Some(json!({ "status": status.as_u16() })))
    } else {
        Err(DeliveryError::transient(format!(
            "POST {url} answered {status}"
        )))
    }
}

#[async_trait::async_trait]
impl Channel for Webhooks {
    async fn deliver(&self, job: &Job<'_>) -> std::result::Result<Option<Value>, DeliveryError> {
        let Some(ep) = self.endpoints.get(job.target) else {
            return Err(DeliveryError::permanent(format!(
                "no webhook named {:?} is configured on this server",
                job.target
            )));
        };
        post_signed(&self.http, &ep.url, &ep.key, job).await
    }

    async fn check(&self) -> crate::Result<Vec<String>> {
        let mut out = Vec::new();
        for ep in self.endpoints.values() {
            let host = ep.url.host_str().unwrap_or_default().to_string();
            let port = ep.url.port_or_known_default().unwrap_or(443);
            let connect = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await;
            match connect {
                Ok(Ok(_)) => out.push(format!("webhook:{} -> {} (reachable)", ep.name, ep.url)),
                Ok(Err(e)) => {
                    return Err(Error::Config(format!(
                        "webhook {:?}: cannot connect to {host}:{port}: {e}",
                        ep.name
                    )));
                }
                Err(_) => {
                    return Err(Error::Config(format!(
                        "webhook {:?}: no connection to {host}:{port} within 5 s",
                        ep.name
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_like_standard_webhooks() {
        // The Standard Webhooks reference test vector.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let key = parse_secret(secret);
        // 24 bytes decoded: accepted.
        let key = key.unwrap();
        assert_eq!(
            signature(&key, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let sig = signature(&key, id, 1614265330, body);
        assert!(verify(secret, id, "1614265330", body, &sig, 1614265330, 300).is_ok());
        assert_eq!(
            verify(secret, id, "1614265330", b"{}", &sig, 1614265330, 300),
            Err(VerifyError::NoMatch)
        );
        assert!(matches!(
            verify(secret, id, "1614265330", body, &sig, 1614265330 + 301, 300),
            Err(VerifyError::Stale(_))
        ));
        let two = format!("v1,AAAA {sig}");
        assert!(verify(secret, id, "1614265330", body, &two, 1614265330, 300).is_ok());
    }

    #[test]
    fn refuses_bad_configuration() {
        let s = generate_secret();
        assert!(Endpoint::new("billing", "https://example.com/h", &s).is_ok());
        assert!(Endpoint::new("billing", "http://127.0.0.1:9/h", &s).is_ok());
        let e = Endpoint::new("billing", "http://example.com/h", &s).unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let e = Endpoint::new("billing", "https://example.com/h", "hunter2").unwrap_err();
        assert!(e.to_string().contains("whsec_"), "{e}");
        let e = Endpoint::new("billing", "https://example.com/h", "whsec_c2hvcnQ=").unwrap_err();
        assert!(e.to_string().contains("24"), "{e}");
        let env: BTreeMap<String, String> = [(
            "INLOOP_WEBHOOK_BILLING_URL".to_string(),
            "https://x/h".to_string(),
        )]
        .into_iter()
        .collect();
        let e = resolve(&BTreeMap::new(), &env).unwrap_err();
        assert!(
            e.to_string().contains("INLOOP_WEBHOOK_BILLING_SECRET"),
            "{e}"
        );
        let mut env = env;
        env.insert("INLOOP_WEBHOOK_BILLING_SECRET".into(), s);
        let got = resolve(&BTreeMap::new(), &env).unwrap();
        assert_eq!(got["billing"].url.as_str(), "https://x/h");
    }
}
