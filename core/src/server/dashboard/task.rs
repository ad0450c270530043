//! The task page and its form posts: answer, claim, release, cancel.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use uuid::Uuid;

use super::CHANNEL;
use super::request::{FlashParam, Posted, principal, session, to_sign_in, viewer};
use super::respond::{error_page, html, see_other};
use crate::dashboard::view::{Flash, FormState, TaskView};
use crate::dashboard::{form, pages};
use crate::error::Error;
use crate::model::Answer;
use crate::server::AppState;
use crate::server::extract::TaskId;
use crate::users::Session;

/// The messages a redirect may ask for (a fixed set: nothing from the URL is shown).
fn flash_for(done: Option<&str>) -> Option<Flash> {
    Some(Flash::Ok(
        match done? {
            "answered" => "Answer accepted.",
            "voted" => "Your vote is recorded; the task waits for the other approvers.",
            "claimed" => "You claimed this task: others cannot answer it until you release it.",
            "released" => "Claim released.",
            "cancelled" => "Task cancelled.",
            _ => return None,
        }
        .into(),
    ))
}

async fn render_task(
    state: &AppState,
    s: &Session,
    id: Uuid,
    status: StatusCode,
    form_state: FormState<'_>,
    flash: Option<Flash>,
) -> Response {
    let v = viewer(s);
    let task = match state.engine.get_as(id, &principal(s)).await {
        Ok(t) => t,
        Err(e) => return error_page(&e, Some(&v)),
    };
    let audit = match state.engine.audit(id).await {
        Ok(a) => a,
        Err(e) => return error_page(&e, Some(&v)),
    };
    let may = match state.engine.permissions(&task, &principal(s)).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(&v)),
    };
    let deliveries = match state.engine.deliveries_as(id, &principal(s)).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(&v)),
    };
    html(
        status,
        pages::task(&TaskView {
            viewer: &v,
            task: &task,
            audit: &audit,
            deliveries: &deliveries,
            may,
            form: form_state,
            flash,
        }),
    )
}

pub(in crate::server) async fn task_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<TaskId, crate::server::ApiError>,
    Query(p): Query<FlashParam>,
    uri: axum::http::Uri,
) -> Response {
    let s = match session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(&state, &uri.to_string()).await,
        Err(e) => return error_page(&e, None),
    };
    let Ok(TaskId(id)) = id else {
        return error_page(&Error::NotFound("?".into()), Some(&viewer(&s)));
    };
    render_task(
        &state,
        &s,
        id,
        StatusCode::OK,
        FormState::default(),
        flash_for(p.done.as_deref()),
    )
    .await
}

pub(in crate::server) async fn answer(
    State(state): State<AppState>,
    id: Result<TaskId, crate::server::ApiError>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let Ok(TaskId(id)) = id else {
        return error_page(&Error::NotFound("?".into()), Some(&viewer(s)));
    };
    let task = match state.engine.get_as(id, &principal(s)).await {
        Ok(t) => t,
        Err(e) => return error_page(&e, Some(&viewer(s))),
    };
    let fields: Vec<(String, String)> = posted
        .fields
        .iter()
        .filter(|(k, _)| k.starts_with('/'))
        .cloned()
        .collect();
    let response = match form::parse(&task.response_schema, &fields) {
        Ok(v) => v,
        Err(errors) => {
            // Text that does not convert (`12x` for a number) never reaches the core; the
            // form comes back with what was typed and the field errors.
            state.metrics.answer(false);
            return render_task(
                &state,
                s,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                FormState {
                    values: None,
                    errors: &errors,
                    posted: Some(&fields),
                },
                Some(Flash::Error("Some answers need another look.".into())),
            )
            .await;
        }
    };
    let result = state
        .engine
        .answer_as(
            id,
            Answer {
                response: response.clone(),
                by: s.user.name.clone(),
                channel: CHANNEL.into(),
            },
            &principal(s),
        )
        .await;
    state.metrics.answer(result.is_ok());
    let e = match result {
        Ok(t) if t.status == crate::model::Status::Pending => {
            return see_other(&format!("/tasks/{id}?done=voted"), &[]);
        }
        Ok(_) => return see_other(&format!("/tasks/{id}?done=answered"), &[]),
        Err(e) => e,
    };
    match refusal(e) {
        Ok(Refusal {
            status,
            keep_form,
            errors,
            text,
        }) => {
            let form = FormState {
                values: keep_form.then_some(&response),
                errors: &errors,
                posted: keep_form.then_some(fields.as_slice()),
            };
            render_task(&state, s, id, status, form, Some(Flash::Error(text))).await
        }
        Err(e) => error_page(&e, Some(&viewer(s))),
    }
}

/// How the task page shows an answer the core refused.
struct Refusal {
    status: StatusCode,
    /// Whether the form comes back as the person filled it (they can fix and resend), or
    /// fresh (the task moved on: answered, forbidden, out of attempts).
    keep_form: bool,
    errors: Vec<crate::error::FieldError>,
    text: String,
}

/// The page for a refused answer; `Err` hands back an error that gets the error page.
fn refusal(e: Error) -> Result<Refusal, Error> {
    let status = crate::server::error::status_for(e.code());
    Ok(match e {
        Error::InvalidAnswer { errors } => Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            keep_form: true,
            errors,
            text: "The answer does not fit what was asked.".into(),
        },
        // The verification pipeline said no (or could not decide): the reason goes to the
        // person, with the form as they filled it, and the task stays pending.
        Error::VerificationRejected {
            reason,
            attempt,
            max_attempts,
            ..
        } => {
            let left = max_attempts.saturating_sub(attempt);
            Refusal {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                keep_form: true,
                errors: Vec::new(),
                text: format!(
                    "Your answer was not accepted: {reason} ({left} attempt{} left).",
                    if left == 1 { "" } else { "s" }
                ),
            }
        }
        e @ (Error::VerificationInconclusive { .. } | Error::VerificationPending { .. }) => {
            Refusal {
                status,
                keep_form: true,
                errors: Vec::new(),
                text: e.to_string(),
            }
        }
        e
        @ (Error::Conflict { .. } | Error::Forbidden(_) | Error::VerificationExhausted { .. }) => {
            Refusal {
                status,
                keep_form: false,
                errors: Vec::new(),
                text: e.to_string(),
            }
        }
        e => return Err(e),
    })
}

async fn act(
    state: &AppState,
    id: Result<TaskId, crate::server::ApiError>,
    posted: Posted,
    what: &'static str,
) -> Response {
    let s = &posted.session;
    let Ok(TaskId(id)) = id else {
        return error_page(&Error::NotFound("?".into()), Some(&viewer(s)));
    };
    let who = principal(s);
    let name = s.user.name.as_str();
    let result = match what {
        "claimed" => state.engine.claim(id, name, CHANNEL, &who).await,
        "released" => state.engine.release(id, name, CHANNEL, &who).await,
        _ => {
            let reason = posted
                .get("reason")
                .map(str::trim)
                .filter(|r| !r.is_empty());
            state
                .engine
                .cancel_as(id, name, CHANNEL, reason, &who)
                .await
        }
    };
    match result {
        Ok(_) => see_other(&format!("/tasks/{id}?done={what}"), &[]),
        Err(e @ (Error::Conflict { .. } | Error::Forbidden(_) | Error::InvalidArgument(_))) => {
            let status = crate::server::error::status_for(e.code());
            render_task(
                state,
                s,
                id,
                status,
                FormState::default(),
                Some(Flash::Error(e.to_string())),
            )
            .await
        }
        Err(e) => error_page(&e, Some(&viewer(s))),
    }
}

pub(in crate::server) async fn claim(
    State(state): State<AppState>,
    id: Result<TaskId, crate::server::ApiError>,
    posted: Posted,
) -> Response {
    act(&state, id, posted, "claimed").await
}

pub(in crate::server) async fn release(
    State(state): State<AppState>,
    id: Result<TaskId, crate::server::ApiError>,
    posted: Posted,
) -> Response {
    act(&state, id, posted, "released").await
}

pub(in crate::server) async fn cancel(
    State(state): State<AppState>,
    id: Result<TaskId, crate::server::ApiError>,
    posted: Posted,
) -> Response {
    act(&state, id, posted, "cancelled").await
}
