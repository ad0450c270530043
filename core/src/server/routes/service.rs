//! The service handlers: the OpenAPI document, metrics, health, readiness and fallbacks.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use uuid::Uuid;

use super::ApiDoc;
use crate::error::Error;
use crate::server::AppState;
use crate::server::error::{ApiError, ErrorBody};

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub(crate) async fn openapi() -> Response {
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
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
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
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// How long `/readyz` waits for the database. A probe must answer promptly: while the
/// database is down, a connection attempt waits for the pool's acquire timeout (10 s), longer
/// than load balancers and Kubernetes (1 s by default) wait for a probe.
pub(crate) const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: `200` when the database answers within [`READY_TIMEOUT`], else `503`.
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
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    // A lookup of an id that cannot exist: NotFound means the database answered.
    match tokio::time::timeout(READY_TIMEOUT, state.engine.get(Uuid::nil())).await {
        Ok(Ok(_) | Err(Error::NotFound(_))) => Ok("ready"),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(Error::Database(format!(
            "the database did not answer within {} s",
            READY_TIMEOUT.as_secs()
        ))
        .into()),
    }
}

/// Any other path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new("not_found", "no such endpoint")
}

/// A known path with a method it does not serve (axum adds the `Allow` header).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        "method_not_allowed",
        "this endpoint does not serve that method (see the Allow header)",
    )
}
