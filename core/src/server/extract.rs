//! Extractors whose failures are JSON errors (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::apikeys::{self, ApiKey};
use crate::error::Error;

/// The caller, authenticated by `Authorization: Bearer ilk_...`.
pub struct Caller(pub ApiKey);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(Error::Unauthorized(
                "missing API key: send Authorization: Bearer ilk_...".into(),
            )
            .into());
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| {
                Error::Unauthorized(
                    "malformed Authorization header: expected Bearer ilk_...".into(),
                )
            })?;
        Ok(Caller(apikeys::authenticate(&state.engine, secret).await?))
    }
}

/// A JSON request body, at most the router's body limit; an empty body is `{}` when
/// `T` accepts it (see [`OptionalJson`]).
pub struct JsonBody<T>(pub T);

/// Bodies up to this size are read to the end even when over the limit, so that the client,
/// still sending, receives the `413` instead of a reset connection.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads the body, at most [`super::MAX_BODY_BYTES`]; a larger one is `413 too_large` (and is
/// never parsed).
async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let limit = super::MAX_BODY_BYTES;
    let too_large = |size: Option<usize>| ApiError {
        details: serde_json::json!({ "what": "request body", "size": size, "limit": limit }),
        ..ApiError::new(
            "too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large(declared));
    }
    let mut stream = req.into_body().into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new("invalid_json", format!("cannot read the request body: {e}"))
        })?;
        total += chunk.len();
        if total > DRAIN_LIMIT {
            return Err(too_large(None));
        }
        if total <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > limit {
        return Err(too_large(Some(total)));
    }
    Ok(Bytes::from(buf))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new("invalid_json", format!("invalid JSON body: {e}")))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        Ok(JsonBody(parse(&bytes)?))
    }
}

/// A JSON body that may be absent (an empty body is `T::default()`).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        Ok(OptionalJson(parse(&bytes)?))
    }
}

/// Query parameters; a bad one is `422 invalid_argument`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::new("invalid_argument", format!("bad query: {e}")))
    }
}

/// The `{id}` path segment, a task id.
pub struct TaskId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(s) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new("invalid_argument", e.body_text()))?;
        Uuid::parse_str(&s).map(TaskId).map_err(|_| {
            ApiError::new(
                "invalid_argument",
                format!("{s:?} is not a task id (a UUID)"),
            )
        })
    }
}

/// The `{key}` path segment, an idempotency key (percent-decoded).
pub struct KeySegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for KeySegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(k)| KeySegment(k))
            .map_err(|e| ApiError::new("invalid_argument", e.body_text()))
    }
}
