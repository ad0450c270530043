//! `POST /slack/interactivity`: Slack's interactivity requests (button clicks).
//!
//! The raw body's signature is verified before anything is parsed (`v0` HMAC-SHA256, constant
//! time, five-minute window); a replayed request (a signature seen before) is acknowledged and
//! ignored. The request is acknowledged at once; the answer is made afterwards, as the inloop
//! user the Slack user maps to (configured mapping, else the Slack profile's e-mail), through
//! the core's checks. The message itself is replaced by the outbox's `ended` delivery.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use crate::access::Principal;
use crate::audit::kind;
use crate::channels::slack::{self, RequestError};
use crate::engine::Engine;
use crate::model::{Answer, now_ms};
use crate::store::{Decision, NewAudit};

/// Interactivity payloads are small; anything bigger is refused before verification.
const MAX_BYTES: usize = 256 * 1024;

pub(super) async fn interactivity(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = state.channels.clone().filter(|c| c.slack().is_some()) else {
        return (
            StatusCode::NOT_FOUND,
            "slack is not configured on this server",
        )
            .into_response();
    };
    let slack = channels.slack().expect("checked");
    if body.len() > MAX_BYTES {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    }
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let signature = h("x-slack-signature");
    let now = now_ms() / 1000;
    match slack::verify_request(
        slack.signing_secret(),
        h("x-slack-request-timestamp"),
        signature,
        &body,
        now,
    ) {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(reason = ?e, "inloop: refused a Slack request");
            let why = match e {
                RequestError::Malformed => "missing or malformed Slack signature headers",
                RequestError::Stale => "the request timestamp is outside the five-minute window",
                RequestError::Forged => "the signature does not match",
            };
            return (StatusCode::UNAUTHORIZED, why).into_response();
        }
    }
    if !slack.first_sight(signature, now) {
        // Slack retries and duplicated deliveries carry the same signature: already handled.
        return StatusCode::OK.into_response();
    }
    let payload: Option<Value> = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str(&v).ok());
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "no JSON `payload` field").into_response();
    };
    if payload["type"] != "block_actions" {
        return StatusCode::OK.into_response(); // nothing else is sent to us yet
    }
    let action = &payload["actions"][0];
    let approve = match action["action_id"].as_str() {
        Some(slack::APPROVE) => true,
        Some(slack::REJECT) => false,
        _ => return StatusCode::OK.into_response(), // the link button: Slack opens the URL
    };
    let (Some(task), Some(user)) = (
        action["value"]
            .as_str()
            .and_then(|v| Uuid::parse_str(v).ok()),
        payload["user"]["id"].as_str().map(str::to_string),
    ) else {
        return (StatusCode::BAD_REQUEST, "the action names no task or user").into_response();
    };
    // Acknowledge now (Slack wants an answer within 3 s); the answer is slow work.
    let engine = state.engine.clone();
    tokio::spawn(async move {
        click(&engine, &channels, task, &user, approve).await;
    });
    StatusCode::OK.into_response()
}

/// Answers `task` for the Slack user `slack_user`, or records why not.
async fn click(
    engine: &Engine,
    channels: &crate::channels::Channels,
    task: Uuid,
    slack_user: &str,
    approve: bool,
) {
    let slack = channels.slack().expect("checked by the handler");
    let user = match slack.mapped_user(slack_user) {
        Some(name) => engine.store().user_by_name(name).await,
        None => match slack.user_email(slack_user).await {
            Ok(Some(email)) => engine.store().user_by_email(&email).await,
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e.message, "inloop: cannot look up a Slack user");
                Ok(None)
            }
        },
    };
    let user = match user {
        Ok(Some(u)) if u.disabled_at.is_none() => u,
        Ok(_) => {
            refuse(engine, task, slack_user, "unknown_slack_user").await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "inloop: Slack click not handled");
            return;
        }
    };
    let t = match engine.get(task).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "inloop: Slack click for an unknown task");
            return;
        }
    };
    let Some(response) = slack::approval_response(&t.response_schema, approve) else {
        refuse(engine, task, slack_user, "not_an_approval").await;
        return;
    };
    let answer = Answer {
        response,
        by: user.name.clone(),
        channel: "slack".into(),
    };
    let who = Principal::User(user.identity());
    // Refusals (not allowed, already answered) are audited by the core.
    if let Err(e) = engine.answer_as(task, answer, &who).await {
        tracing::info!(error = %e, slack_user, "inloop: Slack answer refused");
    }
}

async fn refuse(engine: &Engine, task: Uuid, slack_user: &str, reason: &str) {
    let row = NewAudit {
        actor: Some(format!("slack:{slack_user}")),
        channel: Some("slack".into()),
        kind: kind::ANSWER_REFUSED,
        data: json!({ "reason": reason, "slack_user": slack_user }),
    };
    let r = engine
        .store()
        .transition(&task, now_ms(), |_| {
            (
                Decision {
                    audit: vec![row],
                    ..Default::default()
                },
                (),
            )
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "inloop: cannot audit a refused Slack click");
    }
}
