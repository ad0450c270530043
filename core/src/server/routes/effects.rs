//! The exactly-once effect handlers (docs/api.md, docs/policies.md).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{NamespaceParam, actor, as_principal};
use crate::apikeys::ApiKey;
use crate::effects::{Begin, Effect, EffectEvent, EffectFilter, Resolve};
use crate::error::Error;
use crate::server::AppState;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::extract::{Caller, JsonBody, KeySegment, OptionalJson, Params};

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
pub(in crate::server) struct EffectParams {
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
pub(crate) async fn list_effects(
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
pub(crate) async fn get_effect(
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
pub(in crate::server) struct BeginBody {
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
pub(crate) async fn begin_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
    OptionalJson(body): OptionalJson<BeginBody>,
) -> Result<Json<Begin>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    let by = actor(&key, body.by);
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
pub(in crate::server) struct FinishBody {
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
pub(crate) async fn finish_effect(
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
pub(in crate::server) struct AbortBody {
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
pub(crate) async fn abort_effect(
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
pub(crate) async fn resolve_effect(
    State(state): State<AppState>,
    Caller(key): Caller,
    KeySegment(effect): KeySegment,
    Params(p): Params<NamespaceParam>,
    JsonBody(mut body): JsonBody<Resolve>,
) -> Result<Json<Effect>, ApiError> {
    let ns = effect_namespace(&key, p.namespace)?;
    body.by = Some(actor(&key, body.by.filter(|b| !b.trim().is_empty())));
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
pub(crate) async fn effect_audit(
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
