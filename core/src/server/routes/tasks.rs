//! The task handlers: create, list, get, answer, cancel, verdict, claim, release, audit, wait.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{NamespaceParam, actor, as_principal, channel, own_task};
use crate::apikeys::ApiKey;
use crate::engine::AgentVerdict;
use crate::error::Error;
use crate::model::{Answer, AuditEvent, Created, ListFilter, NewTask, Page, Status, Task};
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{Caller, JsonBody, KeySegment, OptionalJson, Params, TaskId};
use crate::server::{AppState, WAIT_DEFAULT_MS, WAIT_MAX_MS};

/// Create a task, or get the one its key already names.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = NewTask,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 200, description = "The key already named this task (a replay)", body = Created,
         headers(("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Another namespace", body = ErrorBody),
        (status = 409, description = "The key names a different request", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "Invalid task", body = ErrorBody),
    )
)]
pub(crate) async fn create_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    headers: axum::http::HeaderMap,
    JsonBody(mut new): JsonBody<NewTask>,
) -> Result<Response, ApiError> {
    if new.traceparent.is_none()
        && let Some(v) = headers.get("traceparent")
    {
        // W3C propagation over HTTP: the caller's span, when the body names none.
        new.traceparent = Some(
            v.to_str()
                .map_err(|_| Error::InvalidArgument("the traceparent header is not text".into()))?
                .to_string(),
        );
    }
    match new.namespace.as_deref() {
        Some(ns) if ns != key.namespace => {
            return Err(Error::Forbidden(format!(
                "this API key is for namespace {:?}, not {ns:?}",
                key.namespace
            ))
            .into());
        }
        _ => new.namespace = Some(key.namespace.clone()),
    }
    let created = state.engine.create(new).await?;
    Ok(if created.created {
        (StatusCode::CREATED, Json(created)).into_response()
    } else {
        let mut r = (StatusCode::OK, Json(created)).into_response();
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        r
    })
}

/// Listing filters (the key's namespace is implied).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::server) struct ListParams {
    /// The key's namespace (another is `403 forbidden`); implied when absent.
    namespace: Option<String>,
    /// Only tasks in this state.
    status: Option<Status>,
    /// Only tasks whose key starts with this.
    key_prefix: Option<String>,
    /// Only tasks whose `assign_to` names this user, e-mail address or `role:NAME`.
    assignee: Option<String>,
    /// Only tasks created at or after this time (ms since the epoch).
    created_after: Option<i64>,
    /// Only tasks created before this time (ms since the epoch).
    created_before: Option<i64>,
    /// Page size, 1..=1000 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List the key's namespace's tasks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = Page),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 422, description = "Bad filter", body = ErrorBody),
    )
)]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    Caller(key): Caller,
    Params(p): Params<ListParams>,
) -> Result<Json<Page>, ApiError> {
    let page = state
        .engine
        .list_as(
            ListFilter {
                namespace: p.namespace,
                status: p.status,
                key_prefix: p.key_prefix,
                assignee: p.assignee,
                created_after: p.created_after,
                created_before: p.created_before,
                limit: p.limit,
                cursor: p.cursor,
            },
            &as_principal(&key),
        )
        .await?;
    Ok(Json(page))
}

/// Get a task.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
    )
)]
pub(crate) async fn get_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(own_task(&state, &key, id).await?))
}

/// Get the task an idempotency key names (in the key's namespace).
#[utoipa::path(
    get,
    path = "/api/v1/tasks/by-key/{key}",
    tag = "tasks",
    params(("key" = String, Path, description = "Idempotency key (percent-encoded)"), NamespaceParam),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Another namespace", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
    )
)]
pub(crate) async fn get_task_by_key(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(task_key): KeySegment,
    Params(p): Params<NamespaceParam>,
) -> Result<Json<Task>, ApiError> {
    if let Some(ns) = p.namespace.filter(|ns| *ns != key.namespace) {
        return Err(Error::Forbidden(format!(
            "this API key is for namespace {:?}, not {ns:?}",
            key.namespace
        ))
        .into());
    }
    Ok(Json(
        state.engine.get_by_key(&key.namespace, &task_key).await?,
    ))
}

/// An answer.
#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::server) struct AnswerBody {
    /// The answer, checked against the task's response schema.
    #[schema(value_type = Value)]
    response: Value,
    /// Who answers (default `apikey:<key name>`).
    by: Option<String>,
}

/// Answer a pending task (the key needs `--allow-answer`).
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/answer",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    request_body = AnswerBody,
    responses(
        (status = 200, description = "The completed task", body = Task),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "The key may not answer", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
        (status = 409, description = "The task already ended, or another answer is being verified (`verification_pending`)", body = ErrorBody),
        (status = 410, description = "Verification rejected the last allowed answer: the task ended (`verification_exhausted`, every reason in `details.reasons`)", body = ErrorBody),
        (status = 422, description = "The answer does not match the response schema (`invalid_answer`), or verification rejected it (`verification_rejected`, the reason in `details.reason`; the task stays pending)", body = ErrorBody),
        (status = 503, description = "The verifier could not decide and the task is fail-closed (`verification_inconclusive`; the task stays pending)", body = ErrorBody),
    )
)]
pub(crate) async fn answer_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    JsonBody(body): JsonBody<AnswerBody>,
) -> Result<Json<Task>, ApiError> {
    let answer = Answer {
        response: body.response,
        by: actor(&key, body.by),
        channel: channel(&key),
    };
    let result = state
        .engine
        .answer_as(id, answer, &as_principal(&key))
        .await
        .map_err(ApiError::from);
    state.metrics.answer(result.is_ok());
    Ok(Json(result?))
}

/// Why a task is cancelled.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(in crate::server) struct CancelBody {
    reason: Option<String>,
    /// Who cancels (default `apikey:<key name>`).
    by: Option<String>,
}

/// Cancel a pending task.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/cancel",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    request_body(content = Option<CancelBody>, description = "Optional"),
    responses(
        (status = 200, description = "The cancelled task", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
        (status = 409, description = "The task already ended", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<Json<Task>, ApiError> {
    let by = actor(&key, body.by);
    Ok(Json(
        state
            .engine
            .cancel_as(
                id,
                &by,
                &channel(&key),
                body.reason.as_deref(),
                &as_principal(&key),
            )
            .await?,
    ))
}

/// Record the agent's own verifier's verdict on the task's accepted answer (the SDKs'
/// `verifier=`). `attempts` is the task's `attempts` as read with the answer; `reject` sends
/// the task back to pending with the reason for the human (or ends it as
/// `verification_exhausted` on the last attempt); `inconclusive` follows the task's fail
/// policy. The key's namespace only, like a cancel.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/verdict",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    request_body = AgentVerdict,
    responses(
        (status = 200, description = "The task after the verdict", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
        (status = 409, description = "The task is not completed, or this answer was already judged", body = ErrorBody),
        (status = 410, description = "The rejection used the last attempt (`verification_exhausted`)", body = ErrorBody),
        (status = 422, description = "A malformed verdict", body = ErrorBody),
    )
)]
pub(crate) async fn verdict_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    JsonBody(body): JsonBody<AgentVerdict>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(
        state
            .engine
            .submit_verdict_as(id, body, &as_principal(&key))
            .await?,
    ))
}

/// Who claims or releases.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(in crate::server) struct ClaimBody {
    /// Who takes (or gives back) the task (default `apikey:<key name>`).
    by: Option<String>,
}

/// Claim a pending task: while claimed, only the claimer (or an admin) may answer it. The key
/// needs `--allow-answer`. Claiming one's own claim again changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/claim",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    request_body(content = Option<ClaimBody>, description = "Optional"),
    responses(
        (status = 200, description = "The claimed task", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "The key may not answer, or someone else holds the task", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
        (status = 409, description = "The task already ended", body = ErrorBody),
    )
)]
pub(crate) async fn claim_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    OptionalJson(body): OptionalJson<ClaimBody>,
) -> Result<Json<Task>, ApiError> {
    claim_or_release(&state, &key, id, body, true).await
}

async fn claim_or_release(
    state: &AppState,
    key: &ApiKey,
    id: Uuid,
    body: ClaimBody,
    claim: bool,
) -> Result<Json<Task>, ApiError> {
    let by = actor(key, body.by);
    let (who, channel) = (as_principal(key), channel(key));
    let task = if claim {
        state.engine.claim(id, &by, &channel, &who).await?
    } else {
        state.engine.release(id, &by, &channel, &who).await?
    };
    Ok(Json(task))
}

/// Release a claim (only the claimer may; `by` must name them).
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/release",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    request_body(content = Option<ClaimBody>, description = "Optional"),
    responses(
        (status = 200, description = "The task, unclaimed", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Someone else holds the task", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
        (status = 409, description = "The task already ended", body = ErrorBody),
    )
)]
pub(crate) async fn release_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    OptionalJson(body): OptionalJson<ClaimBody>,
) -> Result<Json<Task>, ApiError> {
    claim_or_release(&state, &key, id, body, false).await
}

/// A task's audit trail, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/audit",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "The audit rows", body = Vec<AuditEvent>),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
    )
)]
pub(crate) async fn task_audit(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    own_task(&state, &key, id).await?;
    Ok(Json(state.engine.audit(id).await?))
}

/// How long a long poll may last.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::server) struct WaitParams {
    /// Milliseconds to wait at most (default 25000, at most 60000).
    timeout_ms: Option<u64>,
}

/// Long poll: the task once it ended, or still pending when `timeout_ms` passed.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/wait",
    tag = "tasks",
    params(("id" = Uuid, Path, description = "Task id"), WaitParams),
    responses(
        (status = 200, description = "The task (pending if the limit passed)", body = Task),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such task in the key's namespace", body = ErrorBody),
        (status = 503, description = "The server is shutting down; retry", body = ErrorBody),
    )
)]
pub(crate) async fn wait_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    Params(p): Params<WaitParams>,
) -> Result<Json<Task>, ApiError> {
    let ms = p.timeout_ms.unwrap_or(WAIT_DEFAULT_MS).min(WAIT_MAX_MS);
    own_task(&state, &key, id).await?;
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        r = state.engine.wait(id, Some(Duration::from_millis(ms))) => Ok(Json(r?)),
        _ = async {
            if shutdown.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => Err(ApiError::new("unavailable", "the server is shutting down; retry the wait")),
    }
}
