//! Slack: `slack:#channel` / `slack:C123` / `slack:@U123` targets get a `chat.postMessage` with
//! the title, a payload summary and buttons; when the task ends the message is replaced with
//! `chat.update` ("Approved by alice at 14:02", "Timed out", ...).
//!
//! Approval schemas (a required boolean, optional text) get Approve / Reject buttons (Reject
//! asks for confirmation); clicks arrive at `POST /slack/interactivity`
//! (`server/slack_events.rs`), signed by Slack (`v0` HMAC-SHA256 over
//! `v0:{timestamp}:{raw body}`, [`verify_request`]). Other schemas get an "Answer in inloop"
//! "Respond…" button that opens a modal generated from the schema (`slack_modal.rs`) when the
//! schema is flat enough, and every message links to the task's dashboard page.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Channel, DeliveryError, Job, sign};
use crate::error::{Error, Result};
use crate::model::{Status, Task};

/// Action ids of the buttons.
pub const APPROVE: &str = "inloop.approve";
pub const REJECT: &str = "inloop.reject";
/// Opens the answer modal (schemas that are not approvals).
pub const RESPOND: &str = "inloop.respond";

/// Checked Slack settings.
#[derive(Clone)]
pub struct SlackSettings {
    bot_token: String,
    signing_secret: String,
    /// The Web API base, `https://slack.com/api` unless overridden (tests).
    pub api_base: String,
    /// Slack user id -> inloop user name.
    pub users: BTreeMap<String, String>,
    /// The dashboard's URL for link buttons.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackSettings")
            .field("api_base", &self.api_base)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

/// `INLOOP_SLACK_BOT_TOKEN`, `INLOOP_SLACK_SIGNING_SECRET`, `INLOOP_SLACK_API_URL`,
/// `INLOOP_SLACK_USERS` (`U123:alice,U456:bob`), over `[channels.slack]`. `None` when no
/// token and no secret is set.
pub(crate) fn resolve(
    file: Option<&crate::config::SlackConfig>,
    env: &BTreeMap<String, String>,
    public_url: Option<&str>,
) -> Result<Option<SlackSettings>> {
    let file = file.cloned().unwrap_or_default();
    let var = |k: &str| {
        env.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let token = var("INLOOP_SLACK_BOT_TOKEN").or(file.bot_token);
    let secret = var("INLOOP_SLACK_SIGNING_SECRET").or(file.signing_secret);
    let (token, secret) = match (token, secret) {
        (None, None) => return Ok(None),
        (Some(t), Some(s)) => (t, s),
        (None, Some(_)) => {
            return Err(Error::Config(
                "slack: INLOOP_SLACK_BOT_TOKEN (channels.slack.bot_token, xoxb-...) is missing"
                    .into(),
            ));
        }
        (Some(_), None) => {
            return Err(Error::Config(
                "slack: INLOOP_SLACK_SIGNING_SECRET (channels.slack.signing_secret) is missing: \
                 without it clicks cannot be verified"
                    .into(),
            ));
        }
    };
    if !token.starts_with("xoxb-") {
        return Err(Error::Config(
            "slack: the bot token must be a bot token (xoxb-...)".into(),
        ));
    }
    if secret.len() < 16 || !secret.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Config(
            "slack: the signing secret looks wrong (copy it from the app's Basic Information page)"
                .into(),
        ));
    }
    let api_base = var("INLOOP_SLACK_API_URL")
        .or(file.api_url)
        .unwrap_or_else(|| "https://slack.com/api".into())
        .trim_end_matches('/')
        .to_string();
    let url = reqwest::Url::parse(&api_base)
        .map_err(|e| Error::Config(format!("slack: INLOOP_SLACK_API_URL {api_base:?}: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() != "https" && !loopback {
        return Err(Error::Config(
            "slack: INLOOP_SLACK_API_URL must use https".into(),
        ));
    }
    let mut users = file.users;
    if let Some(list) = var("INLOOP_SLACK_USERS") {
        for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((id, name)) = pair.split_once(':') else {
                return Err(Error::Config(format!(
                    "slack: INLOOP_SLACK_USERS entry {pair:?} must look like SLACKID:username"
                )));
            };
            users.insert(id.trim().to_string(), name.trim().to_ascii_lowercase());
        }
    }
    Ok(Some(SlackSettings {
        bot_token: token,
        signing_secret: secret,
        api_base,
        users,
        public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
    }))
}

/// Why a request to the interactivity endpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Missing or malformed headers.
    Malformed,
    /// The timestamp is more than five minutes from now.
    Stale,
    /// The signature does not match.
    Forged,
}

/// Checks Slack's request signature: `X-Slack-Signature` = `v0=` + hex HMAC-SHA256(signing
/// secret, `v0:{X-Slack-Request-Timestamp}:{raw body}`), compared in constant time, with the
/// timestamp within 300 s of `now` (Unix seconds). Call it before parsing anything.
pub fn verify_request(
    signing_secret: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> std::result::Result<(), RequestError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| RequestError::Malformed)?;
    if (now - ts).abs() > 300 {
        return Err(RequestError::Stale);
    }
    let hex_sig = signature
        .strip_prefix("v0=")
        .ok_or(RequestError::Malformed)?;
    let mac = hex::decode(hex_sig).map_err(|_| RequestError::Malformed)?;
    let base = format!("v0:{}:", timestamp.trim());
    if sign::verify_hmac_sha256(signing_secret.as_bytes(), &[base.as_bytes(), body], &mac) {
        Ok(())
    } else {
        Err(RequestError::Forged)
    }
}

/// The signature Slack would send (tests and tools).
pub fn sign_request(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let base = format!("v0:{timestamp}:");
    let mac = sign::hmac_sha256(signing_secret.as_bytes(), &[base.as_bytes(), body]);
    format!("v0={}", hex::encode(mac))
}

/// The Slack channel.
pub struct Slack {
    settings: SlackSettings,
    http: reqwest::Client,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings.fmt(f)
    }
}

/// A Slack Web API failure: retry or not.
fn api_error(method: &str, e: &str) -> DeliveryError {
    // Errors a retry cannot fix; everything else (ratelimited, internal_error, network) can be.
    const PERMANENT: &[&str] = &[
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "missing_scope",
        "invalid_blocks",
        "message_not_found",
        "cant_update_message",
    ];
    let msg = format!("Slack {method}: {e}");
    if PERMANENT.contains(&e) {
        DeliveryError::permanent(msg)
    } else {
        DeliveryError::transient(msg)
    }
}

impl Slack {
    pub fn new(settings: SlackSettings) -> Result<Slack> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("slack: cannot build the HTTP client: {e}")))?;
        Ok(Slack { settings, http })
    }

    /// The signing secret the interactivity endpoint verifies with.
    pub fn signing_secret(&self) -> &str {
        &self.settings.signing_secret
    }

    /// The configured Slack id -> inloop name mapping.
    pub fn mapped_user(&self, slack_id: &str) -> Option<&str> {
        self.settings.users.get(slack_id).map(String::as_str)
    }

    /// Calls a Web API method with the bot token; the parsed body when `ok`.
    pub async fn call(
        &self,
        method: &str,
        body: &Value,
    ) -> std::result::Result<Value, DeliveryError> {
        let url = format!("{}/{method}", self.settings.api_base);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.settings.bot_token)
            .json(body)
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("Slack {method}: {e}")))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| DeliveryError::transient(format!("Slack {method} ({status}): {e}")))?;
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(api_error(
                method,
                v["error"].as_str().unwrap_or("unknown_error"),
            ))
        }
    }

    /// The e-mail address of a Slack user (`users.info`, scope `users:read.email`).
    pub async fn user_email(
        &self,
        slack_id: &str,
    ) -> std::result::Result<Option<String>, DeliveryError> {
        let v = self
            .call("users.info", &json!({ "user": slack_id }))
            .await?;
        Ok(v["user"]["profile"]["email"]
            .as_str()
            .map(str::to_ascii_lowercase))
    }

    fn blocks(&self, task: &Task) -> Vec<Value> {
        let summary = super::email::summary(&task.payload, 2500);
        let mut blocks = vec![json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", escape(&task.title), escape(&summary))}
        })];
        let id = task.id.to_string();
        let mut elements = Vec::new();
        if crate::dashboard::form::is_approval(&task.response_schema) {
            elements.push(
                json!({"type": "button", "action_id": APPROVE, "value": id, "style": "primary",
                                 "text": {"type": "plain_text", "text": "Approve"}}),
            );
            elements.push(json!({"type": "button", "action_id": REJECT, "value": id, "style": "danger",
                                 "text": {"type": "plain_text", "text": "Reject"},
                                 "confirm": {"title": {"type": "plain_text", "text": "Reject?"},
                                             "text": {"type": "plain_text", "text": truncate(&task.title, 300)},
                                             "confirm": {"type": "plain_text", "text": "Reject"},
                                             "deny": {"type": "plain_text", "text": "Cancel"}}}));
        } else if super::slack_modal::supported(&task.response_schema) {
            elements.push(json!({"type": "button", "action_id": RESPOND, "value": id,
                                 "text": {"type": "plain_text", "text": "Respond…"}}));
        }
        if let Some(base) = &self.settings.public_url {
            elements.push(json!({"type": "button", "action_id": "inloop.open",
                                 "url": format!("{base}/tasks/{id}"),
                                 "text": {"type": "plain_text", "text": "Answer in inloop"}}));
        }
        if !elements.is_empty() {
            blocks.push(json!({"type": "actions", "block_id": format!("inloop:{id}"), "elements": elements}));
        }
        blocks
    }
}

/// The line that replaces the buttons once the task ended.
pub fn outcome_line(task: &Task) -> String {
    let at = task
        .ended_at
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default();
    match task.status {
        Status::Completed => {
            let by = task.answered_by.as_deref().unwrap_or("someone");
            let approval = crate::dashboard::form::is_approval(&task.response_schema);
            let verdict = match task
                .response
                .as_ref()
                .filter(|_| approval)
                .and_then(approval_value)
            {
                Some(true) => "Approved",
                Some(false) => "Rejected",
                None => "Answered",
            };
            match task.answered_via.as_deref() {
                Some("slack") => format!("{verdict} by {by} at {at}"),
                Some(via) => format!("{verdict} in the {via} by {by} at {at}"),
                None => format!("{verdict} by {by} at {at}"),
            }
        }
        Status::TimedOut => format!("Timed out at {at}"),
        Status::Cancelled => format!(
            "Cancelled by {} at {at}",
            task.cancelled_by.as_deref().unwrap_or("someone")
        ),
        Status::VerificationExhausted => format!("Not accepted by the verifier ({at})"),
        Status::Pending => "Pending".into(),
    }
}

/// The answer an approval schema gets for Approve (`true`) or Reject (`false`): the required
/// boolean property set; `None` when the schema is not an approval.
pub fn approval_response(schema: &Value, approve: bool) -> Option<Value> {
    if !crate::dashboard::form::is_approval(schema) {
        return None;
    }
    let key = schema
        .get("required")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|k| schema["properties"][*k]["type"] == "boolean")?;
    Some(json!({ key: approve }))
}

/// The single boolean of an approval answer.
fn approval_value(response: &Value) -> Option<bool> {
    let m = response.as_object()?;
    let mut bools = m.values().filter_map(Value::as_bool);
    let b = bools.next()?;
    bools.next().is_none().then_some(b)
}

/// Slack mrkdwn escaping (`&`, `<`, `>`).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `#ops` -> `#ops`, `@U123` -> `U123` (a DM from the app), ids as they are.
fn channel_of(target: &str) -> &str {
    target.strip_prefix('@').unwrap_or(target)
}

#[async_trait::async_trait]
impl Channel for Slack {
    async fn deliver(&self, job: &Job<'_>) -> std::result::Result<Option<Value>, DeliveryError> {
        let task = job.task;
        if job.event == "ended" {
            let Some(shown) = job.shown else {
                return Err(DeliveryError::permanent("no posted message to update"));
            };
            let line = outcome_line(task);
            let body = json!({
                "channel": shown["channel"], "ts": shown["ts"],
                "text": format!("{} — {line}", task.title),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&task.title))}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(&line)}]}
                ]
            });
            self.call("chat.update", &body).await?;
            return Ok(None);
        }
        let reminder = crate::store::outbox::is_reminder(job.event);
        if let (true, Some(shown)) = (reminder, job.shown) {
            // A reminder replies in the original message's thread (also shown in the channel),
            // so there is one set of buttons, the one `chat.update` replaces at the end.
            let text = format!("Reminder: still waiting for an answer to “{}”", task.title);
            let body = json!({
                "channel": shown["channel"], "thread_ts": shown["ts"], "reply_broadcast": true,
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": escape(&text)}}],
            });
            let v = self.call("chat.postMessage", &body).await?;
            return Ok(Some(json!({ "channel": v["channel"], "ts": v["ts"] })));
        }
        let body = json!({
            "channel": channel_of(job.target),
            "text": if reminder {
                format!("Reminder: approval needed: {}", task.title)
            } else {
                format!("Approval needed: {}", task.title)
            },
            "blocks": self.blocks(task),
            "metadata": {"event_type": "inloop_task", "event_payload": {"task_id": task.id, "delivery": job.idem_key}},
        });
        let v = self.call("chat.postMessage", &body).await?;
        Ok(Some(json!({ "channel": v["channel"], "ts": v["ts"] })))
    }

    async fn check(&self) -> Result<Vec<String>> {
        match self.call("auth.test", &json!({})).await {
            Ok(v) => Ok(vec![format!(
                "slack as {} in {} (token works)",
                v["user"].as_str().unwrap_or("?"),
                v["team"].as_str().unwrap_or("?")
            )]),
            Err(e) => Err(Error::Config(format!(
                "slack: auth.test failed: {}",
                e.message
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slacks_published_signing_vector() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign_request(secret, 1531420618, body), sig);
        assert_eq!(
            verify_request(secret, "1531420618", sig, body, 1531420618 + 10),
            Ok(())
        );
        assert_eq!(
            verify_request(secret, "1531420618", sig, body, 1531420618 + 301),
            Err(RequestError::Stale)
        );
        assert_eq!(
            verify_request(secret, "1531420618", sig, b"token=x", 1531420618),
            Err(RequestError::Forged)
        );
        assert_eq!(
            verify_request(secret, "1531420618", "a2114d", body, 1531420618),
            Err(RequestError::Malformed)
        );
    }

    #[test]
    fn outcome_lines() {
        let mut t: Task = serde_json::from_value(json!({
            "id": "0193a0c4-0000-7000-8000-000000000001", "namespace": "default", "key": "k",
            "title": "T", "payload": {}, "payload_schema": null, "digest": "d",
            "response_schema": {"type": "object", "required": ["approved"], "properties":
                {"approved": {"type": "boolean"}, "comment": {"type": "string"}}},
            "notify": [], "assign_to": [], "status": "completed", "response": {"approved": true},
            "answered_by": "alice", "answered_via": "slack", "cancelled_by": null,
            "cancel_reason": null, "claimed_by": null, "claimed_at": null,
            "created_at": "2026-11-25T14:00:00Z", "updated_at": "2026-11-25T14:02:00Z",
            "deadline": null, "ended_at": "2026-11-25T14:02:00Z"
        }))
        .unwrap();
        assert_eq!(outcome_line(&t), "Approved by alice at 14:02 UTC");
        t.answered_via = Some("dashboard".into());
        t.answered_by = Some("bob".into());
        t.response = Some(json!({"approved": false, "comment": "no"}));
        assert_eq!(
            outcome_line(&t),
            "Rejected in the dashboard by bob at 14:02 UTC"
        );
        t.response_schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"},
                                                                       "n": {"type": "integer"}}});
        assert_eq!(
            outcome_line(&t),
            "Answered in the dashboard by bob at 14:02 UTC"
        );
        t.status = Status::TimedOut;
        assert_eq!(outcome_line(&t), "Timed out at 14:02 UTC");
    }
}
