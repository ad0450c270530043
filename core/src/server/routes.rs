//! The handlers, each annotated for the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, KeySegment, OptionalJson, Params, TaskId};
use super::openapi::StandardErrors;
use super::{AppState, WAIT_DEFAULT_MS, WAIT_MAX_MS};
use crate::access::Principal;
use crate::apikeys::ApiKey;
use crate::effects::{
    Begin, Effect, EffectEvent, EffectFilter, EffectState, Resolve, ResolveAction,
};
use crate::engine::AgentVerdict;
use crate::error::Error;
use crate::model::{Answer, AuditEvent, Created, ListFilter, NewTask, Page, Status, Task};

/// The channel recorded for answers and cancels made through the API: `api:<key id>`, so the
/// audit trail keeps which key acted even when the request names someone else in `by`.
fn channel(key: &ApiKey) -> String {
    format!("api:{}", key.id)
}

/// The OpenAPI document of the server.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inloop",
        description = "Durable human-in-the-loop tasks for AI agents (docs/api.md)."
    ),
    paths(
        create_task,
        list_tasks,
        get_task,
        get_task_by_key,
        answer_task,
        cancel_task,
        verdict_task,
        claim_task,
        release_task,
        task_audit,
        wait_task,
        list_effects,
        get_effect,
        begin_effect,
        finish_effect,
        abort_effect,
        resolve_effect,
        effect_audit,
        openapi,
        metrics,
        healthz,
        readyz
    ),
    components(schemas(
        NewTask,
        Task,
        Created,
        Page,
        AuditEvent,
        Status,
        AnswerBody,
        CancelBody,
        ClaimBody,
        AgentVerdict,
        Effect,
        EffectState,
        EffectEvent,
        Begin,
        Resolve,
        ResolveAction,
        BeginBody,
        FinishBody,
        AbortBody,
        crate::verify::Verification,
        crate::verify::Rejection,
        ErrorBody
    )),
    modifiers(&BearerAuth, &StandardErrors),
    security(("api_key" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The caller's task `id`: `404` for an unknown id and for a task of another namespace
/// (whose existence is not revealed; the core's access rules decide).
async fn own_task(state: &AppState, key: &ApiKey, id: Uuid) -> Result<Task, ApiError> {
    Ok(state.engine.get_as(id, &as_principal(key)).await?)
}

fn as_principal(key: &ApiKey) -> Principal {
    Principal::ApiKey(key.clone())
}

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
pub(super) async fn create_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    JsonBody(mut new): JsonBody<NewTask>,
) -> Result<Response, ApiError> {
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
pub(super) struct ListParams {
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
pub(super) async fn list_tasks(
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
pub(super) async fn get_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(own_task(&state, &key, id).await?))
}

/// Which namespace a by-key lookup means.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct NamespaceParam {
    /// The key's namespace (another is `403 forbidden`); implied when absent.
    namespace: Option<String>,
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
pub(super) async fn get_task_by_key(
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
pub(super) struct AnswerBody {
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
pub(super) async fn answer_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    JsonBody(body): JsonBody<AnswerBody>,
) -> Result<Json<Task>, ApiError> {
    let answer = Answer {
        response: body.response,
        by: body.by.unwrap_or_else(|| format!("apikey:{}", key.name)),
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
pub(super) struct CancelBody {
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
pub(super) async fn cancel_task(
    State(state): State<AppState>,
    Caller(key): Caller,
    TaskId(id): TaskId,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<Json<Task>, ApiError> {
    let by = body.by.unwrap_or_else(|| format!("apikey:{}", key.name));
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
pub(super) async fn verdict_task(
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
pub(super) struct ClaimBody {
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
pub(super) async fn claim_task(
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
    let by = body.by.unwrap_or_else(|| format!("apikey:{}", key.name));
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
pub(super) async fn release_task(
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
pub(super) async fn task_audit(
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
pub(super) struct WaitParams {
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
pub(super) async fn wait_task(
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

// ------------------------------------------------------------------------------------------
// Exactly-once effects (docs/policies.md)

/// The namespace of an effect request: the key's (another is `403 forbidden`).
fn effect_namespace(key: &ApiKey, asked: Option<String>) -> Result<String, ApiError> {
    match asked {
        Some(ns) if ns != key.namespace => Err(Error::Forbidden(format!(
            "this API key is for namespace {:?}, not {ns:?}",
            key.namespace
        ))
        .into()),
        _ => Ok(key.namespace.clone()),
    }
}

/// Which effects to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EffectParams {
    /// The key's namespace (another is `403 forbidden`); implied when absent.
    namespace: Option<String>,
    /// `in_doubt` (the same as `running`), `done`, `failed` or `retry_allowed`; every state
    /// when absent.
    state: Option<String>,
    /// At most this many, 1..=1000 (default 100).
    limit: Option<u32>,
}

/// List the key's namespace's effects, oldest first (`?state=in_doubt`: the ones waiting for
/// a person).
#[utoipa::path(
    get,
    path = "/api/v1/effects",
    tag = "effects",
    params(EffectParams),
    responses(
        (status = 200, description = "The effects, oldest first", body = Vec<Effect>),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Another namespace", body = ErrorBody),
        (status = 422, description = "Bad filter", body = ErrorBody),
    )
)]
pub(super) async fn list_effects(
    State(state): State<AppState>,
    Caller(key): Caller,
    Params(p): Params<EffectParams>,
) -> Result<Json<Vec<Effect>>, ApiError> {
    let filter = EffectFilter {
        namespace: Some(effect_namespace(&key, p.namespace)?),
        state: p.state,
        limit: p.limit,
    };
    Ok(Json(
        state.engine.effects(filter, &as_principal(&key)).await?,
    ))
}

/// Get an effect.
#[utoipa::path(
    get,
    path = "/api/v1/effects/{key}",
    tag = "effects",
    params(("key" = String, Path, description = "The effect's key (percent-encoded)"), NamespaceParam),
    responses(
        (status = 200, description = "The effect", body = Effect),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Another namespace", body = ErrorBody),
        (status = 404, description = "No such effect in the key's namespace", body = ErrorBody),
    )
)]
pub(super) async fn get_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
) -> Result<Json<Effect>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    Ok(Json(
        state
            .engine
            .effect(&ns, &effect, &as_principal(&key))
            .await?,
    ))
}

/// Who begins an effect.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BeginBody {
    /// The attempt's token (8..=256 printable ASCII; random, chosen by the client so that a
    /// retried begin is the same attempt). Generated when absent.
    token: Option<String>,
    /// Who or which process (default `apikey:<key name>`).
    by: Option<String>,
}

/// Begin an effect: `{"outcome": "run", "token", "attempt"}` (run it now, then finish or
/// abort with the token) or `{"outcome": "done", "result", "finished_at"}` (it already
/// happened: do not run it). `409 effect_in_doubt` when another attempt began and never
/// recorded an outcome.
#[utoipa::path(
    post,
    path = "/api/v1/effects/{key}/begin",
    tag = "effects",
    params(("key" = String, Path, description = "The effect's key (percent-encoded)"), NamespaceParam),
    request_body(content = Option<BeginBody>, description = "Optional"),
    responses(
        (status = 200, description = "Run it, or its recorded result", body = Begin),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "Another namespace", body = ErrorBody),
        (status = 409, description = "In doubt (`effect_in_doubt`: `details.attempt`, `started_at`, `started_by`)", body = ErrorBody),
        (status = 422, description = "A bad key or token", body = ErrorBody),
    )
)]
pub(super) async fn begin_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
    OptionalJson(body): OptionalJson<BeginBody>,
) -> Result<Json<Begin>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    let by = body.by.unwrap_or_else(|| format!("apikey:{}", key.name));
    let begun = state
        .engine
        .effect_begin(
            &ns,
            &effect,
            body.token.as_deref(),
            Some(&by),
            &as_principal(&key),
        )
        .await?;
    Ok(Json(begun))
}

/// The result of an attempt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FinishBody {
    /// The attempt's token (from begin).
    token: String,
    /// The result (any JSON, at most 256 KiB canonical); returned to every later begin.
    #[schema(value_type = Value)]
    result: Value,
}

/// Record the result of the attempt holding `token`: the effect is done. A repeat with the
/// same token and result changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/effects/{key}/finish",
    tag = "effects",
    params(("key" = String, Path, description = "The effect's key (percent-encoded)"), NamespaceParam),
    request_body = FinishBody,
    responses(
        (status = 200, description = "The effect, done", body = Effect),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such effect", body = ErrorBody),
        (status = 409, description = "The token no longer holds the effect (`conflict`)", body = ErrorBody),
        (status = 413, description = "The result is over 256 KiB", body = ErrorBody),
    )
)]
pub(super) async fn finish_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
    JsonBody(body): JsonBody<FinishBody>,
) -> Result<Json<Effect>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    let done = state
        .engine
        .effect_finish(&ns, &effect, &body.token, body.result, &as_principal(&key))
        .await?;
    Ok(Json(done))
}

/// Why an attempt failed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AbortBody {
    /// The attempt's token (from begin).
    token: String,
    /// What went wrong (recorded; at most 2000 characters are kept).
    error: Option<String>,
}

/// Release the attempt holding `token` after its function raised: the effect is `failed` and
/// the next begin runs it again.
#[utoipa::path(
    post,
    path = "/api/v1/effects/{key}/abort",
    tag = "effects",
    params(("key" = String, Path, description = "The effect's key (percent-encoded)"), NamespaceParam),
    request_body = AbortBody,
    responses(
        (status = 200, description = "The effect, failed", body = Effect),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such effect", body = ErrorBody),
        (status = 409, description = "The token no longer holds the effect (`conflict`)", body = ErrorBody),
    )
)]
pub(super) async fn abort_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
    JsonBody(body): JsonBody<AbortBody>,
) -> Result<Json<Effect>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    let failed = state
        .engine
        .effect_abort(
            &ns,
            &effect,
            &body.token,
            body.error.as_deref(),
            &as_principal(&key),
        )
        .await?;
    Ok(Json(failed))
}

/// Resolve an effect in doubt, as a person (the key needs `--allow-answer`): `mark_done` (with
/// `result`, returned to every later call) or `allow_retry` (the next call runs it again).
/// With `attempt`, only that attempt is resolved. Audited (`by`, default `apikey:<key name>`).
#[utoipa::path(
    post,
    path = "/api/v1/effects/{key}/resolve",
    tag = "effects",
    params(("key" = String, Path, description = "The effect's key (percent-encoded)"), NamespaceParam),
    request_body = Resolve,
    responses(
        (status = 200, description = "The effect, resolved", body = Effect),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 403, description = "The key may not resolve (no `--allow-answer`), or another namespace", body = ErrorBody),
        (status = 404, description = "No such effect", body = ErrorBody),
        (status = 409, description = "Not in doubt, or another attempt is (`conflict`)", body = ErrorBody),
        (status = 422, description = "A malformed resolution", body = ErrorBody),
    )
)]
pub(super) async fn resolve_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
    JsonBody(mut body): JsonBody<Resolve>,
) -> Result<Json<Effect>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    if body.by.as_deref().is_none_or(|b| b.trim().is_empty()) {
        body.by = Some(format!("apikey:{}", key.name));
    }
    let resolved = state
        .engine
        .effect_resolve(&ns, &effect, body, &as_principal(&key))
        .await?;
    Ok(Json(resolved))
}

/// An effect's audit trail (hash-chained like a task's), oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/effects/{key}/audit",
    tag = "effects",
    params(("key" = String, Path, description = "The effect's key (percent-encoded)"), NamespaceParam),
    responses(
        (status = 200, description = "The audit rows", body = Vec<EffectEvent>),
        (status = 401, description = "Missing or bad API key", body = ErrorBody),
        (status = 404, description = "No such effect", body = ErrorBody),
    )
)]
pub(super) async fn effect_audit(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
) -> Result<Json<Vec<EffectEvent>>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    Ok(Json(
        state
            .engine
            .effect_audit(&ns, &effect, &as_principal(&key))
            .await?,
    ))
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub(super) async fn openapi() -> Response {
    let doc = ApiDoc::openapi();
    match doc.to_json() {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response(),
        Err(e) => {
            ApiError::new("internal", format!("cannot render the document: {e}")).into_response()
        }
    }
}

/// Prometheus metrics (text format 0.0.4): tasks by status, answers, parked waits, HTTP
/// requests and their durations by route template.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "The exposition", body = String,
         content_type = "text/plain; version=0.0.4"),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    )
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render(&state.engine).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Liveness: `200 ok` while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    security(()),
    responses((status = 200, description = "ok", body = String, content_type = "text/plain"))
)]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: `200` when the database answers, else `503`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "ready", body = String, content_type = "text/plain"),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    )
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    // A lookup of an id that cannot exist: NotFound means the database answered.
    match state.engine.get(Uuid::nil()).await {
        Ok(_) | Err(Error::NotFound(_)) => Ok("ready"),
        Err(e) => Err(e.into()),
    }
}

/// Any other path.
pub(super) async fn not_found() -> ApiError {
    ApiError::new("not_found", "no such endpoint")
}

/// A known path with a method it does not serve (axum adds the `Allow` header).
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        "method_not_allowed",
        "this endpoint does not serve that method (see the Allow header)",
    )
}
