//! E-mail: `email:ADDRESS` targets get a multipart (text + HTML) mail over SMTP (lettre,
//! rustls) with the task's title, a summary of its payload and a signed link to answer it.
//!
//! A link is `{public_url}/email/{token}`; the token is `KID.PAYLOAD.MAC`: PAYLOAD is base64url
//! JSON `{"t": task, "r": recipient, "e": expiry ms, "n": link id}` and MAC is base64url
//! HMAC-SHA256 over `KID.PAYLOAD` under the key KID names. Keys rotate: the first configured key
//! signs, every configured key verifies. A GET of the link only renders the answer form; the
//! POST answers as the inloop user with the recipient's address, and consumes the link in the
//! answering transaction (single use). See `server/email_links.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Channel, DeliveryError, Job, sign};
use crate::config::EmailConfig;
use crate::error::{Error, Result};
use crate::model::Task;

/// Checked e-mail settings.
#[derive(Clone)]
pub struct EmailSettings {
    smtp_url: String,
    pub from: Mailbox,
    /// `(kid, key)`; the first signs.
    keys: Vec<(String, Vec<u8>)>,
    pub link_ttl: Duration,
    /// Where links point (no trailing slash).
    pub public_url: String,
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("smtp_url", &crate::store::redact_url(&self.smtp_url))
            .field("from", &self.from.to_string())
            .field("kids", &self.keys.iter().map(|k| &k.0).collect::<Vec<_>>())
            .field("link_ttl", &self.link_ttl)
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// The `[channels.email]` table merged with `INLOOP_SMTP_URL`, `INLOOP_EMAIL_FROM`,
/// `INLOOP_LINK_KEYS` (comma-separated `KID:SECRET`) and `INLOOP_LINK_TTL_SECS`. `None` when no
/// SMTP URL is set anywhere (and nothing else e-mail related either).
pub(crate) fn resolve(
    file: Option<&EmailConfig>,
    env: &BTreeMap<String, String>,
    public_url: Option<&str>,
) -> Result<Option<EmailSettings>> {
    let file = file.cloned().unwrap_or_default();
    let var = |k: &str| {
        env.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let smtp_url = var("INLOOP_SMTP_URL").or(file.smtp_url);
    let from = var("INLOOP_EMAIL_FROM").or(file.from);
    let keys: Vec<String> = match var("INLOOP_LINK_KEYS") {
        Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        None => file.link_keys,
    };
    let ttl = match var("INLOOP_LINK_TTL_SECS") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            Error::Config(format!(
                "INLOOP_LINK_TTL_SECS must be a whole number, not {v:?}"
            ))
        })?),
        None => file.link_ttl_secs,
    };
    let Some(smtp_url) = smtp_url else {
        if from.is_some() || !keys.is_empty() {
            return Err(Error::Config(
                "e-mail settings are given but no SMTP server: set INLOOP_SMTP_URL \
                 (channels.email.smtp_url), e.g. smtps://user:pass@smtp.example.com"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let bad = |m: String| Error::Config(format!("email: {m}"));
    let url = reqwest::Url::parse(&smtp_url)
        .map_err(|e| bad(format!("INLOOP_SMTP_URL is not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let tls_required = url
        .query_pairs()
        .any(|(k, v)| k == "tls" && v == "required");
    match url.scheme() {
        "smtps" => {}
        "smtp" if tls_required || loopback => {}
        "smtp" => {
            return Err(bad(format!(
                "{} sends mail unencrypted: use smtps:// or add ?tls=required (STARTTLS)",
                crate::store::redact_url(&smtp_url)
            )));
        }
        s => {
            return Err(bad(format!(
                "the SMTP URL scheme {s:?} is not smtp or smtps"
            )));
        }
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp_url)
        .map_err(|e| bad(format!("INLOOP_SMTP_URL: {e}")))?;
    let from = from.ok_or_else(|| {
        bad("INLOOP_EMAIL_FROM (channels.email.from) is required, e.g. \"inloop <inloop@example.com>\"".into())
    })?;
    let from: Mailbox = from
        .parse()
        .map_err(|e| bad(format!("INLOOP_EMAIL_FROM {from:?} is not an address: {e}")))?;
    if keys.is_empty() {
        return Err(bad(
            "INLOOP_LINK_KEYS (channels.email.link_keys) is required: KID:SECRET entries, \
             the first signs; `inloop channels secret` prints a random secret"
                .into(),
        ));
    }
    let mut parsed: Vec<(String, Vec<u8>)> = Vec::new();
    for k in keys {
        let Some((kid, secret)) = k.split_once(':') else {
            return Err(bad(
                "each link key must look like KID:SECRET (e.g. k1:...)".into()
            ));
        };
        if kid.is_empty()
            || !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(format!(
                "link key id {kid:?} may only use letters, digits, - and _"
            )));
        }
        if secret.len() < 32 {
            return Err(bad(format!(
                "link key {kid:?} is {} characters; use at least 32 random characters",
                secret.len()
            )));
        }
        if parsed.iter().any(|(k, _)| k == kid) {
            return Err(bad(format!("link key id {kid:?} is given twice")));
        }
        parsed.push((kid.to_string(), secret.as_bytes().to_vec()));
    }
    let public_url = public_url
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| {
            bad("links need the server's public URL: set INLOOP_PUBLIC_URL (public_url)".into())
        })?;
    Ok(Some(EmailSettings {
        smtp_url,
        from,
        keys: parsed,
        link_ttl: Duration::from_secs(ttl.unwrap_or(7 * 24 * 3600).max(60)),
        public_url,
    }))
}

/// What a valid link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub task: Uuid,
    /// Lower-case address the link was sent to.
    pub recipient: String,
    pub expires_at: i64,
    /// Random per mail: the single-use record's key.
    pub id: String,
    /// Which key signed it.
    pub kid: String,
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// Not a token we signed (bad shape, unknown key id, MAC mismatch).
    Tampered,
    /// Signed by us, but past its expiry.
    Expired(Link),
}

/// Signs and opens links.
#[derive(Clone)]
pub struct LinkKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl LinkKeys {
    /// `(kid, secret)` pairs; the first signs. Panics on an empty list.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> LinkKeys {
        assert!(!keys.is_empty(), "at least one link key");
        LinkKeys { keys }
    }

    /// A token for `link` under the first key.
    pub fn sign(&self, link: &Link) -> String {
        let (kid, key) = &self.keys[0];
        let payload =
            json!({"t": link.task, "r": link.recipient, "e": link.expires_at, "n": link.id});
        let payload = B64URL.encode(payload.to_string());
        let mac = sign::hmac_sha256(key, &[kid.as_bytes(), b".", payload.as_bytes()]);
        format!("{kid}.{payload}.{}", B64URL.encode(mac))
    }

    /// Checks the MAC under the key the token names (constant time), then the expiry.
    pub fn open(&self, token: &str, now: i64) -> std::result::Result<Link, LinkError> {
        let mut parts = token.split('.');
        let (Some(kid), Some(payload), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Tampered);
        };
        let key = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or(LinkError::Tampered)?;
        let mac = B64URL.decode(mac).map_err(|_| LinkError::Tampered)?;
        if !sign::verify_hmac_sha256(&key.1, &[kid.as_bytes(), b".", payload.as_bytes()], &mac) {
            return Err(LinkError::Tampered);
        }
        let v: Value = B64URL
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(LinkError::Tampered)?;
        let link = Link {
            task: v["t"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or(LinkError::Tampered)?,
            recipient: v["r"].as_str().ok_or(LinkError::Tampered)?.to_string(),
            expires_at: v["e"].as_i64().ok_or(LinkError::Tampered)?,
            id: v["n"].as_str().ok_or(LinkError::Tampered)?.to_string(),
            kid: kid.to_string(),
        };
        if link.expires_at <= now {
            return Err(LinkError::Expired(link));
        }
        Ok(link)
    }

    /// A CSRF token for the link's form: bound to the link, so it is useless without it.
    pub fn csrf(&self, link: &Link) -> String {
        let key = self
            .keys
            .iter()
            .find(|(k, _)| *k == link.kid)
            .unwrap_or(&self.keys[0]);
        B64URL.encode(sign::hmac_sha256(&key.1, &[b"csrf.", link.id.as_bytes()]))
    }

    /// Whether `submitted` is the link's CSRF token (constant time).
    pub fn csrf_ok(&self, link: &Link, submitted: &str) -> bool {
        crate::users::same_secret(&self.csrf(link), submitted)
    }
}

/// A readable summary of a payload: `key: value` lines for an object's top level (nested
/// values as compact JSON), at most `max` characters.
pub fn summary(payload: &Value, max: usize) -> String {
    let text = match payload {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > max {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The e-mail channel.
pub struct Email {
    settings: EmailSettings,
    keys: LinkKeys,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings.fmt(f)
    }
}

impl Email {
    pub fn new(settings: EmailSettings) -> Result<Email> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| Error::Config(format!("email: INLOOP_SMTP_URL: {e}")))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        Ok(Email {
            keys: LinkKeys::new(settings.keys.clone()),
            settings,
            transport,
        })
    }

    /// The link signer (the link endpoints open tokens with it).
    pub fn keys(&self) -> &LinkKeys {
        &self.keys
    }

    /// A fresh link to `task` for `recipient`, valid until the task's deadline or the TTL.
    pub fn link_for(&self, task: &Task, recipient: &str) -> String {
        let ttl_end = crate::model::now_ms() + self.settings.link_ttl.as_millis() as i64;
        let link = Link {
            task: task.id,
            recipient: recipient.to_ascii_lowercase(),
            expires_at: task.deadline.map_or(ttl_end, |d| d.min(ttl_end)),
            id: Uuid::now_v7().simple().to_string(),
            kid: String::new(),
        };
        format!(
            "{}/email/{}",
            self.settings.public_url,
            self.keys.sign(&link)
        )
    }

    fn message(&self, task: &Task, to: Mailbox, idem_key: &str, event: &str) -> Result<Message> {
        let link = self.link_for(task, to.email.as_ref());
        let approval = crate::dashboard::form::is_approval(&task.response_schema);
        let summary = summary(&task.payload, 2000);
        let mut text = format!("{}\n\n{summary}\n\n", task.title);
        if approval {
            text.push_str(&format!(
                "Approve: {link}?choice=approve\nReject: {link}?choice=reject\n"
            ));
        } else {
            text.push_str(&format!("Respond: {link}\n"));
        }
        text.push_str("\nThe link opens a page to confirm your answer; it works once.\n");
        let html = maud::html! {
            h2 { (task.title) }
            pre style="font-family: inherit; white-space: pre-wrap" { (summary) }
            @if approval {
                p {
                    a href=(format!("{link}?choice=approve")) { "Approve" }
                    " · "
                    a href=(format!("{link}?choice=reject")) { "Reject" }
                }
            } @else {
                p { a href=(link) { "Respond…" } }
            }
            p style="color: #666" { "The link opens a page to confirm your answer; it works once." }
        }
        .into_string();
        let part = |ct: ContentType, body: String| {
            SinglePart::builder()
                .header(ct)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(body)
        };
        Message::builder()
            .from(self.settings.from.clone())
            .to(to)
            .subject(if crate::store::outbox::is_reminder(event) {
                format!("[inloop] Reminder: {}", task.title)
            } else {
                format!("[inloop] {}", task.title)
            })
            .message_id(Some(format!("<{idem_key}@inloop>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, text))
                    .singlepart(part(ContentType::TEXT_HTML, html)),
            )
            .map_err(|e| Error::Internal(format!("cannot build the mail: {e}")))
    }
}

#[async_trait::async_trait]
impl Channel for Email {
    async fn deliver(&self, job: &Job<'_>) -> std::result::Result<Option<Value>, DeliveryError> {
        let to: Mailbox = job.target.parse().map_err(|e| {
            DeliveryError::permanent(format!("{:?} is not an e-mail address: {e}", job.target))
        })?;
        let msg = self
            .message(job.task, to, job.idem_key, job.event)
            .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        match self.transport.send(msg).await {
            Ok(resp) => Ok(Some(json!({ "smtp": resp.code().to_string() }))),
            Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!("SMTP: {e}"))),
            Err(e) => Err(DeliveryError::transient(format!("SMTP: {e}"))),
        }
    }

    async fn check(&self) -> Result<Vec<String>> {
        let url = crate::store::redact_url(&self.settings.smtp_url);
        match self.transport.test_connection().await {
            Ok(true) => Ok(vec![format!("email via {url} (SMTP server answers)")]),
            Ok(false) => Err(Error::Config(format!(
                "email: the SMTP server at {url} did not accept a connection"
            ))),
            Err(e) => Err(Error::Config(format!(
                "email: cannot connect to the SMTP server at {url}: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> LinkKeys {
        LinkKeys::new(vec![
            ("k2".into(), b"0123456789abcdef0123456789abcdef".to_vec()),
            ("k1".into(), b"fedcba9876543210fedcba9876543210".to_vec()),
        ])
    }

    fn link(kid: &str) -> Link {
        Link {
            task: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            recipient: "ann@acme.test".into(),
            expires_at: 2_000,
            id: "n1".into(),
            kid: kid.into(),
        }
    }

    #[test]
    fn links_verify_expire_and_refuse_tampering() {
        let k = keys();
        let token = k.sign(&link(""));
        assert!(token.starts_with("k2."));
        assert_eq!(k.open(&token, 1_000).unwrap(), link("k2"));
        assert_eq!(k.open(&token, 2_000), Err(LinkError::Expired(link("k2"))));
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(k.open(&forged, 1_000), Err(LinkError::Tampered));
        assert_eq!(k.open("k2.e30.AAAA", 1_000), Err(LinkError::Tampered));
        assert_eq!(k.open("nonsense", 1_000), Err(LinkError::Tampered));
        // Rotation: a link signed by k1 (now second) still opens; a dropped key does not.
        let old = LinkKeys::new(vec![k.keys[1].clone()]).sign(&link(""));
        assert_eq!(k.open(&old, 1_000).unwrap().kid, "k1");
        let dropped = LinkKeys::new(vec![k.keys[0].clone()]);
        assert_eq!(dropped.open(&old, 1_000), Err(LinkError::Tampered));
        let l = k.open(&token, 1_000).unwrap();
        assert!(k.csrf_ok(&l, &k.csrf(&l)));
        assert!(!k.csrf_ok(&l, "x"));
    }

    #[test]
    fn settings_fail_loudly() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let key = "k1:0123456789abcdef0123456789abcdef";
        let ok = env(&[
            ("INLOOP_SMTP_URL", "smtp://127.0.0.1:2525"),
            ("INLOOP_EMAIL_FROM", "inloop <inloop@acme.test>"),
            ("INLOOP_LINK_KEYS", key),
        ]);
        assert!(
            resolve(None, &ok, Some("http://127.0.0.1:1"))
                .unwrap()
                .is_some()
        );
        assert!(resolve(None, &env(&[]), None).unwrap().is_none());
        let e = resolve(None, &ok, None).unwrap_err().to_string();
        assert!(e.contains("INLOOP_PUBLIC_URL"), "{e}");
        let mut plain = ok.clone();
        plain.insert("INLOOP_SMTP_URL".into(), "smtp://mail.acme.test".into());
        let e = resolve(None, &plain, Some("https://x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls=required"), "{e}");
        let mut weak = ok.clone();
        weak.insert("INLOOP_LINK_KEYS".into(), "k1:short".into());
        let e = resolve(None, &weak, Some("https://x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 32"), "{e}");
        let mut nofrom = ok.clone();
        nofrom.remove("INLOOP_EMAIL_FROM");
        let e = resolve(None, &nofrom, Some("https://x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("INLOOP_EMAIL_FROM"), "{e}");
        let e = resolve(None, &env(&[("INLOOP_LINK_KEYS", key)]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("INLOOP_SMTP_URL"), "{e}");
    }
}
