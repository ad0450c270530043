//! Errors with stable codes.
//!
//! Every error the engine returns has a `code()` that never changes between releases: the
//! bindings map it to their own exception classes (`inloop.TimedOut`, `InloopError.code` in
//! TypeScript), the CLI prints it, and the REST API will return it. `details()` carries the
//! structured facts (field errors, who answered and when) so no caller has to parse a message.

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model::{Status, format_ms};

/// One problem found in a JSON document, located by a JSON Pointer into the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    /// JSON Pointer to the offending value (`""` is the whole document, `/amount` a field).
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload does not match its schema (or is not valid JSON).
    #[error("invalid payload: {}", summarize(.errors))]
    InvalidPayload { errors: Vec<FieldError> },

    /// An answer does not match the task's response schema. The task stays pending.
    #[error("invalid answer: {}", summarize(.errors))]
    InvalidAnswer { errors: Vec<FieldError> },

    /// A schema given to the engine is not a usable JSON Schema.
    #[error("invalid schema ({which}): {message}")]
    InvalidSchema {
        which: &'static str,
        message: String,
    },

    /// An argument is malformed (bad namespace, key, id, URL, filter ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A document exceeds its documented size limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },

    /// No task with this id.
    #[error("task {0} not found")]
    NotFound(String),

    /// Something other than a task (a user, an API key) does not exist; code `not_found`.
    #[error("{0} not found")]
    Missing(String),

    /// The idempotency key already names a task whose title, payload or schemas differ.
    #[error(
        "key {key:?} in namespace {namespace:?} already names task {existing} with a different request \
         (digest {existing_digest}, this request {new_digest}); use a new key for a new request"
    )]
    KeyReused {
        namespace: String,
        key: String,
        existing: Uuid,
        existing_digest: String,
        new_digest: String,
    },

    /// The task is no longer pending: an answer (or a cancel) arrived after it ended.
    #[error("{}", conflict_message(.id, .status, .by.as_deref(), .at))]
    Conflict {
        id: Uuid,
        status: Status,
        by: Option<String>,
        at: i64,
    },

    /// The task reached its deadline without an answer.
    #[error("task {id} timed out at {} without an answer", format_ms(*.at))]
    TimedOut { id: Uuid, at: i64 },

    /// The task was cancelled.
    #[error("task {id} was cancelled{} at {}{}", .by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default(), format_ms(*.at), .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Cancelled {
        id: Uuid,
        by: Option<String>,
        at: i64,
        reason: Option<String>,
    },

    /// Verification rejected the answer (a rule, the LLM verifier or the agent's verifier):
    /// the task stays pending and the human may answer again. `reason` is for the human.
    #[error("answer rejected by {verifier} (attempt {attempt} of {max_attempts}): {reason}")]
    VerificationRejected {
        id: Uuid,
        verifier: String,
        reason: String,
        /// The rule that failed, for `rules`.
        rule: Option<String>,
        attempt: u32,
        max_attempts: u32,
    },

    /// The verifier could not decide (provider down, refusal, malformed output, timeout) and
    /// the task is fail-closed: it stays pending; the human may answer again.
    #[error("the answer could not be verified ({verifier}): {reason}; the task is still pending")]
    VerificationInconclusive {
        id: Uuid,
        verifier: String,
        reason: String,
    },

    /// Another answer to this task is being verified right now.
    #[error("another answer to task {id} is being verified; try again after {}", format_ms(*.until))]
    VerificationPending { id: Uuid, until: i64 },

    /// Every allowed attempt was rejected: the task ended as `verification_exhausted`.
    #[error("task {id} ended after {} rejected answers: {}", .rejections.len(), .rejections.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>().join("; "))]
    VerificationExhausted {
        id: Uuid,
        at: i64,
        rejections: Vec<crate::verify::Rejection>,
    },

    /// An exactly-once effect started and never recorded a result (its process may have died
    /// inside the effect, or may still be running it): it is not run again until a person
    /// resolves it (mark done, or allow a retry). See `docs/policies.md`.
    #[error(
        "effect {key:?} in namespace {namespace:?} is in doubt: attempt {attempt} started at {}{} \
         and never recorded a result; it will not run again until a person marks it done or \
         allows a retry",
        format_ms(*.started_at),
        .started_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default()
    )]
    EffectInDoubt {
        namespace: String,
        key: String,
        attempt: u32,
        started_at: i64,
        started_by: Option<String>,
    },

    /// An effect operation whose compare-and-set failed: the attempt token no longer holds the
    /// effect (a person resolved it, or another attempt holds it), or a resolution names an
    /// attempt that is not the one in doubt. Code `conflict`.
    #[error("effect {key:?} in namespace {namespace:?} is {state}: {reason}")]
    EffectConflict {
        namespace: String,
        key: String,
        state: String,
        reason: String,
    },

    /// A payload does not produce the digest of the task that was approved: what the agent is
    /// about to do is not what the person approved.
    #[error(
        "the payload does not match what was approved: task {task_id} has digest {expected}, \
         this payload gives {actual}"
    )]
    DigestMismatch {
        task_id: String,
        expected: String,
        actual: String,
    },

    /// No usable credentials: a missing, malformed, unknown or revoked API key.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// The credentials are valid but do not allow this request.
    #[error("forbidden: {0}")]
    Forbidden(String),

    /// The configuration (database URL, environment) is unusable.
    #[error("configuration error: {0}")]
    Config(String),

    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(String),

    /// A stored audit chain or row could not be read back as written.
    #[error("internal error: {0}")]
    Internal(String),

    /// An error from an inloop server (remote mode) that no other variant reproduces exactly:
    /// its code, message and details as the server sent them.
    #[error("{message}")]
    Remote {
        code: String,
        message: String,
        details: Value,
    },
}

impl Error {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidPayload { .. } => "invalid_payload",
            Error::InvalidAnswer { .. } => "invalid_answer",
            Error::InvalidSchema { .. } => "invalid_schema",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::TooLarge { .. } => "too_large",
            Error::NotFound(_) | Error::Missing(_) => "not_found",
            Error::KeyReused { .. } => "key_reused",
            Error::Conflict { .. } => "conflict",
            Error::TimedOut { .. } => "timed_out",
            Error::Cancelled { .. } => "cancelled",
            Error::VerificationRejected { .. } => "verification_rejected",
            Error::VerificationInconclusive { .. } => "verification_inconclusive",
            Error::VerificationPending { .. } => "verification_pending",
            Error::VerificationExhausted { .. } => "verification_exhausted",
            Error::EffectInDoubt { .. } => "effect_in_doubt",
            Error::EffectConflict { .. } => "conflict",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::Config(_) => "config",
            Error::Database(_) => "database",
            Error::Internal(_) => "internal",
            Error::Remote { code, .. } => crate::remote::static_code(code),
        }
    }

    /// Structured facts about the error, as JSON (an object; `{}` when there are none).
    pub fn details(&self) -> Value {
        match self {
            Error::InvalidPayload { errors } | Error::InvalidAnswer { errors } => {
                json!({ "errors": errors })
            }
            Error::InvalidSchema { which, .. } => json!({ "schema": which }),
            Error::TooLarge { what, size, limit } => {
                json!({ "what": what, "size": size, "limit": limit })
            }
            Error::NotFound(id) => json!({ "id": id }),
            Error::Missing(what) => json!({ "what": what }),
            Error::KeyReused {
                namespace,
                key,
                existing,
                existing_digest,
                new_digest,
            } => json!({
                "namespace": namespace, "key": key, "existing_task": existing,
                "existing_digest": existing_digest, "new_digest": new_digest,
            }),
            Error::Conflict { id, status, by, at } => json!({
                "task_id": id, "status": status, "by": by, "at": format_ms(*at),
            }),
            Error::TimedOut { id, at } => json!({ "task_id": id, "at": format_ms(*at) }),
            Error::Cancelled { id, by, at, reason } => json!({
                "task_id": id, "by": by, "at": format_ms(*at), "reason": reason,
            }),
            Error::VerificationRejected {
                id,
                verifier,
                reason,
                rule,
                attempt,
                max_attempts,
            } => json!({
                "task_id": id, "verifier": verifier, "reason": reason, "rule": rule,
                "attempt": attempt, "max_attempts": max_attempts,
                "attempts_left": max_attempts.saturating_sub(*attempt),
            }),
            Error::VerificationInconclusive {
                id,
                verifier,
                reason,
            } => json!({ "task_id": id, "verifier": verifier, "reason": reason }),
            Error::VerificationPending { id, until } => {
                json!({ "task_id": id, "until": format_ms(*until) })
            }
            Error::VerificationExhausted { id, at, rejections } => json!({
                "task_id": id, "at": format_ms(*at),
                "reasons": rejections.iter().map(|r| &r.reason).collect::<Vec<_>>(),
                "rejections": rejections,
            }),
            Error::EffectInDoubt {
                namespace,
                key,
                attempt,
                started_at,
                started_by,
            } => json!({
                "namespace": namespace, "key": key, "attempt": attempt,
                "started_at": format_ms(*started_at), "started_by": started_by,
            }),
            Error::EffectConflict {
                namespace,
                key,
                state,
                reason,
            } => json!({ "namespace": namespace, "key": key, "state": state, "reason": reason }),
            Error::DigestMismatch {
                task_id,
                expected,
                actual,
            } => json!({ "task_id": task_id, "expected": expected, "actual": actual }),
            Error::InvalidArgument(_)
            | Error::Unauthorized(_)
            | Error::Forbidden(_)
            | Error::Config(_)
            | Error::Database(_)
            | Error::Internal(_) => {
                json!({})
            }
            Error::Remote { details, .. } => details.clone(),
        }
    }
}

fn summarize(errors: &[FieldError]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(5)
        .map(|e| {
            if e.path.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.path, e.message)
            }
        })
        .collect();
    if errors.len() > 5 {
        parts.push(format!("and {} more", errors.len() - 5));
    }
    parts.join("; ")
}

fn conflict_message(id: &Uuid, status: &Status, by: Option<&str>, at: &i64) -> String {
    let at = format_ms(*at);
    match status {
        Status::Completed => match by {
            Some(by) => format!("task {id} was already answered by {by} at {at}"),
            None => format!("task {id} was already answered at {at}"),
        },
        Status::TimedOut => format!("task {id} timed out at {at}"),
        Status::Cancelled => match by {
            Some(by) => format!("task {id} was cancelled by {by} at {at}"),
            None => format!("task {id} was cancelled at {at}"),
        },
        Status::VerificationExhausted => {
            format!("task {id} ended at {at} after its verification attempts ran out")
        }
        Status::Pending => format!("task {id} is pending"),
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // 22021 (character_not_in_repertoire) is PostgreSQL refusing text with NUL in it: the
        // input's fault, not an outage. The checks refuse NUL first; this backs them up so
        // an input they miss is a 400, never a 503.
        if let sqlx::Error::Database(d) = &e
            && d.code().as_deref() == Some("22021")
        {
            return Error::InvalidArgument(
                "text must not contain the NUL character (U+0000) or invalid UTF-8".into(),
            );
        }
        Error::Database(e.to_string())
    }
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
