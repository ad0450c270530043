//! `POST /slack/interactivity`: Slack's interactivity requests (button clicks).
//!
//! The raw body's signature is verified before anything is parsed (`v0` HMAC-SHA256, constant
//! time, five-minute window); a replayed request (a signature seen before by any replica: the
//! cache is the `inloop_slack_seen` table) is acknowledged and ignored. The request is
//! acknowledged at once; the answer is made afterwards, as the inloop user the Slack user maps
//! to (configured mapping, else the Slack profile's e-mail), through the core's checks. The message itself is replaced by the outbox's `ended` delivery.

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
use crate::channels::slack_modal;
use crate::engine::Engine;
use crate::error::Error;
use crate::model::{Answer, now_ms};
use crate::store::{Decision, NewAudit};

/// Interactivity payloads are small; anything bigger is refused before verification.
const MAX_BYTES: usize = 256 * 1024;
/// How long a seen signature is remembered (twice Slack's five-minute window).
const REPLAY_KEEP_SECS: i64 = 600;

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
    // Slack retries and duplicated deliveries carry the same signature: already handled, by
    // this replica or another (the replay cache is in the database). Kept ten minutes: past
    // the five-minute window a replay fails the timestamp check anyway.
    match state
        .engine
        .store()
        .slack_first_sight(signature, now * 1000, (now + REPLAY_KEEP_SECS) * 1000)
        .await
    {
        Ok(true) => {}
        Ok(false) => return StatusCode::OK.into_response(),
        Err(e) => {
            // Unknown whether it is a replay: refuse, and Slack retries.
            tracing::warn!(error = %e, "inloop: cannot check a Slack request for replay");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the request for replay",
            )
                .into_response();
        }
    }
    let payload: Option<Value> = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str(&v).ok());
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "no JSON `payload` field").into_response();
    };
    if payload["type"] == "view_submission" {
        // Slack shows errors inline from this response: it is answered in the request.
        return submission(&state.engine, &channels, &payload).await;
    }
    if payload["type"] != "block_actions" {
        return StatusCode::OK.into_response(); // nothing else is sent to us
    }
    let action = &payload["actions"][0];
    let approve = match action["action_id"].as_str() {
        Some(slack::APPROVE) => true,
        Some(slack::REJECT) => false,
        Some(slack::RESPOND) => {
            let (Some(task), Some(trigger)) = (
                action["value"]
                    .as_str()
                    .and_then(|v| Uuid::parse_str(v).ok()),
                payload["trigger_id"].as_str().map(str::to_string),
            ) else {
                return (
                    StatusCode::BAD_REQUEST,
                    "the action names no task or trigger",
                )
                    .into_response();
            };
            // The trigger is valid for 3 s: open the modal right after acknowledging.
            let engine = state.engine.clone();
            tokio::spawn(async move {
                open_modal(&engine, &channels, task, &trigger).await;
            });
            return StatusCode::OK.into_response();
        }
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
    // Where to tell the person why a click was refused (only they see it).
    let channel = payload["container"]["channel_id"]
        .as_str()
        .or_else(|| payload["channel"]["id"].as_str())
        .map(str::to_string);
    // Acknowledge now (Slack wants an answer within 3 s); the answer is slow work.
    let engine = state.engine.clone();
    tokio::spawn(async move {
        click(&engine, &channels, task, &user, approve, channel.as_deref()).await;
    });
    StatusCode::OK.into_response()
}

/// Opens the answer modal for `task` (`views.open` with the click's trigger).
async fn open_modal(
    engine: &Engine,
    channels: &crate::channels::Channels,
    task: Uuid,
    trigger: &str,
) {
    let slack = channels.slack().expect("checked by the handler");
    let view = match engine.get(task).await {
        Ok(t) if !t.status.is_final() => slack_modal::view(&t),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "inloop: Slack modal for an unknown task");
            None
        }
    };
    let Some(view) = view else { return };
    if let Err(e) = slack
        .call(
            "views.open",
            &json!({ "trigger_id": trigger, "view": view }),
        )
        .await
    {
        tracing::warn!(error = %e.message, "inloop: cannot open the Slack modal");
    }
}

/// A modal's submission: converted, answered through the core as the mapped user; errors go
/// back inline (`response_action: errors`), success closes the modal.
async fn submission(
    engine: &Engine,
    channels: &crate::channels::Channels,
    payload: &Value,
) -> Response {
    let slack = channels.slack().expect("checked by the handler");
    let view = &payload["view"];
    if view["callback_id"] != slack_modal::CALLBACK {
        return StatusCode::OK.into_response();
    }
    let errors = |schema: &Value, e: Vec<(String, String)>| {
        axum::Json(slack_modal::errors_response(schema, &e)).into_response()
    };
    let (Some(task), Some(slack_user)) = (
        view["private_metadata"]
            .as_str()
            .and_then(|v| Uuid::parse_str(v).ok()),
        payload["user"]["id"].as_str(),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "the submission names no task or user",
        )
            .into_response();
    };
    let t = match engine.get(task).await {
        Ok(t) => t,
        Err(e) => return errors(&Value::Null, vec![(String::new(), e.to_string())]),
    };
    let schema = &t.response_schema;
    let response = match slack_modal::answer(schema, &view["state"]["values"]) {
        Ok(v) => v,
        Err(e) => return errors(schema, e),
    };
    let user = match resolve_user(engine, slack, slack_user).await {
        Some(u) => u,
        None => {
            refuse(engine, task, slack_user, "unknown_slack_user").await;
            return errors(
                schema,
                vec![(
                    String::new(),
                    "your Slack account is not an inloop user".into(),
                )],
            );
        }
    };
    let answer = Answer {
        response,
        by: user.name.clone(),
        channel: "slack".into(),
    };
    match engine
        .answer_as(task, answer, &Principal::User(user.identity()))
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(crate::error::Error::InvalidAnswer { errors: fe }) => {
            errors(schema, slack_modal::field_errors(&fe))
        }
        Err(e) => errors(schema, vec![(String::new(), e.to_string())]),
    }
}

/// The active inloop user for a Slack user: the configured mapping, else the e-mail address
/// of their Slack profile.
async fn resolve_user(
    engine: &Engine,
    slack: &slack::Slack,
    slack_user: &str,
) -> Option<crate::users::User> {
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
    match user {
        Ok(Some(u)) if u.disabled_at.is_none() => Some(u),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "inloop: cannot read the user of a Slack click");
            None
        }
    }
}

/// Answers `task` for the Slack user `slack_user`, or records why not.
async fn click(
    engine: &Engine,
    channels: &crate::channels::Channels,
    task: Uuid,
    slack_user: &str,
    approve: bool,
    channel: Option<&str>,
) {
    let slack = channels.slack().expect("checked by the handler");
    let Some(user) = resolve_user(engine, slack, slack_user).await else {
        refuse(engine, task, slack_user, "unknown_slack_user").await;
        let text = "Your answer was not accepted: your Slack account is not an inloop user \
                    (ask an admin to map it, or to add a user with your Slack e-mail address)";
        tell(slack, channel, slack_user, text).await;
        return;
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
    // Refusals (not allowed, already answered, rejected by verification) are audited by the
    // core; the person who clicked is told why, in a message only they see.
    match engine.answer_as(task, answer, &who).await {
        Err(e) => {
            tracing::info!(error = %e, slack_user, "inloop: Slack answer refused");
            let text = match &e {
                Error::VerificationRejected { reason, .. } => {
                    format!("Your answer was not accepted: {reason}")
                }
                other => format!("Your answer was not accepted: {other}"),
            };
            tell(slack, channel, slack_user, &text).await;
        }
        // A vote on a task that needs more: say it counted, and what is still missing.
        Ok(after) if after.status == crate::model::Status::Pending && !after.votes.is_empty() => {
            tell(
                slack,
                channel,
                slack_user,
                &crate::policy::vote_summary(&after),
            )
            .await;
        }
        Ok(_) => {}
    }
}

/// A message only `slack_user` sees, in the channel of their click.
async fn tell(slack: &slack::Slack, channel: Option<&str>, slack_user: &str, text: &str) {
    let Some(channel) = channel else { return };
    if let Err(e) = slack
        .call(
            "chat.postEphemeral",
            &json!({ "channel": channel, "user": slack_user, "text": text }),
        )
        .await
    {
        tracing::warn!(error = %e.message, "inloop: cannot tell a Slack user why");
    }
}

async fn refuse(engine: &Engine, task: Uuid, slack_user: &str, reason: &str) {
    let data = json!({ "reason": reason, "slack_user": slack_user });
    let row = NewAudit::by(
        &format!("slack:{slack_user}"),
        "slack",
        kind::ANSWER_REFUSED,
        data,
    );
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
