//! The e-mail link pages: `GET /email/{token}` renders the task and its answer form (never
//! answers: mail scanners follow links), `POST /email/{token}` answers as the inloop user whose
//! e-mail address the link was sent to, checked by the core like any reviewer, and consumes
//! the link in the answering transaction. Expired, reused, other-recipient and unknown-user
//! links get a clear page and a `link_refused` audit row on the task; a token whose signature
//! does not verify names no trustworthy task, so it is logged, not written to a task's chain.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};

use super::AppState;
use crate::access::Principal;
use crate::audit::kind;
use crate::channels::email::{Email, Link, LinkError, summary};
use crate::dashboard::form;
use crate::dashboard::view::FormState;
use crate::error::{Error, FieldError};
use crate::model::{Answer, Task, now_ms};
use crate::store::outbox::LinkUse;
use crate::store::{Decision, NewAudit};
use crate::users::User;

/// The channel name answers and refusals are recorded under.
const CHANNEL: &str = "email";

#[derive(Debug, serde::Deserialize)]
pub(super) struct Choice {
    choice: Option<String>,
}

/// `GET /email/{token}`.
pub(super) async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<Choice>,
) -> Response {
    let (link, task, user) = match admit(&state, &token, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = require_user(&state, &link, &task, user.as_ref(), false).await {
        return r;
    }
    let preset = preselect(&task.response_schema, q.choice.as_deref());
    let chosen = match &preset {
        Some(v) if v.as_object().and_then(|m| m.values().next()) == Some(&Value::Bool(true)) => {
            Some("You chose Approve in the e-mail: press Approve below to confirm.")
        }
        Some(_) => Some("You chose Reject in the e-mail: press Reject below to confirm."),
        None => None,
    };
    let email = state
        .channels
        .as_ref()
        .and_then(|c| c.email())
        .expect("admitted");
    render_form(
        email,
        &token,
        &link,
        &task,
        StatusCode::OK,
        FormState {
            values: preset.as_ref(),
            errors: &[],
            posted: None,
        },
        chosen,
    )
}

/// `POST /email/{token}`: CSRF-checked; answers through the core.
pub(super) async fn submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (link, task, user) = match admit(&state, &token, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let user = match require_user(&state, &link, &task, user.as_ref(), true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let email = state
        .channels
        .as_ref()
        .and_then(|c| c.email())
        .expect("admitted");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    if !super::session::same_origin(&headers, state.public_origin.as_deref())
        || !csrf.is_some_and(|c| email.keys().csrf_ok(&link, c))
    {
        return page_response(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "This form was not sent from its page. Open the link from your e-mail again.",
        );
    }
    let fields: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| k.starts_with('/'))
        .collect();
    let response = match form::parse(&task.response_schema, &fields) {
        Ok(v) => v,
        // Ended meanwhile: the core refuses (and audits) whatever was sent.
        Err(_) if task.status.is_final() => serde_json::Value::Null,
        Err(errors) => return refill(email, &token, &link, &task, &errors, &fields),
    };
    let used = LinkUse {
        link_id: link.id.clone(),
        recipient: link.recipient.clone(),
    };
    let answer = Answer {
        response,
        by: user.name.clone(),
        channel: CHANNEL.into(),
    };
    let who = Principal::User(user.identity());
    match state
        .engine
        .answer_with_link(task.id, answer, &who, &used)
        .await
    {
        Ok(_) => page_response(
            StatusCode::OK,
            "Thank you",
            &format!("Your answer to “{}” is recorded.", task.title),
        ),
        Err(Error::InvalidAnswer { errors }) => {
            refill(email, &token, &link, &task, &errors, &fields)
        }
        // The task's verification said no (or could not decide): the reason goes back on the
        // form, the link stays usable (it is consumed only with an accepted answer).
        Err(
            e @ (Error::VerificationRejected { .. }
            | Error::VerificationInconclusive { .. }
            | Error::VerificationPending { .. }),
        ) => {
            let reason = match &e {
                Error::VerificationRejected { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            let errors = [FieldError {
                path: String::new(),
                message: reason,
            }];
            refill(email, &token, &link, &task, &errors, &fields)
        }
        Err(Error::VerificationExhausted { .. }) | Err(Error::Conflict { .. }) => {
            match state.engine.get(task.id).await {
                Ok(t) => ended_page(&t),
                Err(e) => failure(&e),
            }
        }
        Err(e @ Error::Forbidden(_)) => {
            page_response(StatusCode::FORBIDDEN, "Not allowed", &e.to_string())
        }
        Err(e) => failure(&e),
    }
}

/// Opens the token and checks it against the task; every refusal is a page (and, where the
/// token is ours, an audit row).
async fn admit(
    state: &AppState,
    token: &str,
    post: bool,
) -> Result<(Link, Task, Option<User>), Response> {
    let Some(email) = state.channels.as_ref().and_then(|c| c.email()) else {
        return Err(page_response(
            StatusCode::NOT_FOUND,
            "Not found",
            "E-mail links are not enabled on this server.",
        ));
    };
    let now = now_ms();
    let link = match email.keys().open(token, now) {
        Ok(l) => l,
        Err(LinkError::Tampered) => {
            tracing::warn!("inloop: refused an e-mail link whose signature does not verify");
            return Err(page_response(
                StatusCode::BAD_REQUEST,
                "This link is not valid",
                "The link is damaged or was not issued by this server. Use the link from your \
                 e-mail exactly as it was sent, or answer in the dashboard.",
            ));
        }
        Err(LinkError::Expired(l)) => {
            refuse(state, &l, "expired").await;
            return Err(page_response(
                StatusCode::GONE,
                "This link has expired",
                "Links in e-mails work for a limited time. Answer in the dashboard instead.",
            ));
        }
    };
    let task = match state.engine.get(link.task).await {
        Ok(t) => t,
        Err(Error::NotFound(_)) => {
            return Err(page_response(
                StatusCode::NOT_FOUND,
                "Not found",
                "The task this link was for does not exist any more.",
            ));
        }
        Err(e) => return Err(failure(&e)),
    };
    let sent_to = task.notify.iter().any(|n| {
        n.split_once(':')
            .is_some_and(|(k, t)| k == "email" && t.eq_ignore_ascii_case(&link.recipient))
    });
    if !sent_to {
        refuse(state, &link, "wrong_recipient").await;
        return Err(page_response(
            StatusCode::FORBIDDEN,
            "This link is not for this task",
            "The link was not sent to its recipient for this task.",
        ));
    }
    match state.engine.store().link_used(&link.id).await {
        Ok(true) => {
            refuse(state, &link, "reused").await;
            return Err(page_response(
                StatusCode::GONE,
                "This link was already used",
                "Each link in an e-mail answers once. The answer it carried is recorded.",
            ));
        }
        Ok(false) => {}
        Err(e) => return Err(failure(&e)),
    }
    // A GET of an ended task's link shows the end; a POST goes on to the core, which refuses
    // the late answer with the same words and audits it.
    if task.status.is_final() && !post {
        return Err(ended_page(&task));
    }
    let user = match state.engine.store().user_by_email(&link.recipient).await {
        Ok(u) => u.filter(|u| u.disabled_at.is_none()),
        Err(e) => return Err(failure(&e)),
    };
    Ok((link, task, user))
}

/// The recipient's inloop user, or the refusal page (audited when `audit`, i.e. on a POST:
/// a scanner's GET should not fill the trail).
async fn require_user(
    state: &AppState,
    link: &Link,
    _task: &Task,
    user: Option<&User>,
    audit: bool,
) -> Result<User, Response> {
    match user {
        Some(u) => Ok(u.clone()),
        None => {
            if audit {
                refuse(state, link, "unknown_recipient").await;
            }
            Err(page_response(
                StatusCode::FORBIDDEN,
                "You cannot answer from this address",
                &format!(
                    "{} is not the e-mail address of an active inloop user, so an answer from \
                     it cannot be checked or recorded. Ask an administrator to add you.",
                    link.recipient
                ),
            ))
        }
    }
}

/// Appends a `link_refused` row to the task's chain.
async fn refuse(state: &AppState, link: &Link, reason: &str) {
    let data = json!({ "reason": reason, "link": link.id, "kid": link.kid });
    let row = NewAudit::by(&link.recipient, CHANNEL, kind::LINK_REFUSED, data);
    let result = state
        .engine
        .store()
        .transition(&link.task, now_ms(), |_| {
            (
                Decision {
                    audit: vec![row],
                    ..Default::default()
                },
                (),
            )
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, reason, "inloop: cannot audit a refused e-mail link");
    }
}

/// For an approval schema, `choice=approve|reject` pre-selects the boolean.
fn preselect(schema: &Value, choice: Option<&str>) -> Option<Value> {
    match choice? {
        "approve" => crate::channels::slack::approval_response(schema, true),
        "reject" => crate::channels::slack::approval_response(schema, false),
        _ => None,
    }
}

fn refill(
    email: &Email,
    token: &str,
    link: &Link,
    task: &Task,
    errors: &[FieldError],
    fields: &[(String, String)],
) -> Response {
    render_form(
        email,
        token,
        link,
        task,
        StatusCode::UNPROCESSABLE_ENTITY,
        FormState {
            values: None,
            errors,
            posted: Some(fields),
        },
        Some("Some answers need another look."),
    )
}

#[allow(clippy::too_many_arguments)]
fn render_form(
    email: &Email,
    token: &str,
    link: &Link,
    task: &Task,
    status: StatusCode,
    state: FormState<'_>,
    flash: Option<&str>,
) -> Response {
    let approval = form::is_approval(&task.response_schema);
    let body = html! {
        h1 { (task.title) }
        pre style="white-space: pre-wrap; font-family: inherit" { (summary(&task.payload, 4000)) }
        p { "Answering as " strong { (link.recipient) } "." }
        @if let Some(f) = flash { p role="alert" { (f) } }
        form method="post" action=(format!("/email/{token}")) {
            input type="hidden" name="csrf" value=(email.keys().csrf(link));
            (form::fields(&task.response_schema, &state))
            @if !approval { button type="submit" { "Submit" } }
        }
    };
    respond(status, &task.title, body)
}

fn ended_page(task: &Task) -> Response {
    // The same words as every other channel ("timed out at ...", "answered by ... at ...").
    let m = crate::rules::ended_error(task).to_string();
    let mut c = m.chars();
    let text = match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => m,
    };
    page_response(StatusCode::CONFLICT, "Nothing left to answer", &text)
}

fn failure(e: &Error) -> Response {
    tracing::error!(error = %e, "inloop: e-mail link request failed");
    page_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "Try again in a moment.",
    )
}

fn page_response(status: StatusCode, title: &str, text: &str) -> Response {
    respond(status, title, html! { h1 { (title) } p { (text) } })
}

/// A standalone page: no referrer (the token is in the URL), never cached.
fn respond(status: StatusCode, title: &str, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · inloop" }
            }
            body { main { (body) } }
        }
    };
    let mut r = (status, axum::response::Html(page.into_string())).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}
