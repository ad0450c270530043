//! Errors as HTTP responses: `{"error": {"code", "message", "details"}}` with the status the
//! contract (`docs/api.md`) gives each code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::Error;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The stable code (`not_found`, `invalid_answer`, `unauthorized` ...).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured facts (field errors, who answered and when); `{}` when there are none.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The HTTP status of an error code.
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "invalid_json" => StatusCode::BAD_REQUEST,
        "invalid_payload"
        | "invalid_answer"
        | "invalid_schema"
        | "invalid_argument"
        | "verification_rejected" => StatusCode::UNPROCESSABLE_ENTITY,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "key_reused"
        | "conflict"
        | "verification_pending"
        | "effect_in_doubt"
        | "digest_mismatch" => StatusCode::CONFLICT,
        "timed_out" | "cancelled" | "verification_exhausted" => StatusCode::GONE,
        "verification_inconclusive" => StatusCode::SERVICE_UNAVAILABLE,
        "config" | "database" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// An error the server itself raises (not one from the engine).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: status_for(code),
            code,
            message: message.into(),
            details: json!({}),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = e.code();
        ApiError {
            status: status_for(code),
            code,
            message: e.to_string(),
            details: e.details(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        (self.status, axum::Json(body)).into_response()
    }
}
