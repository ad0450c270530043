//! The task model: what is stored, what callers pass in, what they get back.
//!
//! Times are milliseconds since the Unix epoch (UTC) in the database and in these structs, and
//! RFC 3339 strings in JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::verify::{Rejection, Verification};

/// Where a task is in its life. `Pending` is the only state an answer can move it out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Completed,
    TimedOut,
    Cancelled,
    VerificationExhausted,
}

impl Status {
    /// The stored and wire name (`"pending"`, `"timed_out"` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::VerificationExhausted => "verification_exhausted",
        }
    }

    /// Whether the task has ended (no answer can be accepted any more).
    pub fn is_final(self) -> bool {
        self != Status::Pending
    }
}

impl std::str::FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Status::Pending,
            "completed" => Status::Completed,
            "timed_out" => Status::TimedOut,
            "cancelled" => Status::Cancelled,
            "verification_exhausted" => Status::VerificationExhausted,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown status {other:?} (expected pending, completed, timed_out, cancelled or verification_exhausted)"
                )));
            }
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request for a human, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub namespace: String,
    /// Idempotency key, unique within the namespace.
    pub key: String,
    /// What the human is asked.
    pub title: String,
    pub payload: Value,
    pub payload_schema: Option<Value>,
    pub response_schema: Value,
    /// SHA-256 (hex) of the canonical JSON of title, payload and both schemas.
    pub digest: String,
    /// Where the request is delivered (`"slack:#ops"`, `"email:a@x.com"` ...).
    pub notify: Vec<String>,
    /// Who the request is for: user names, e-mail addresses or `role:NAME`. Reviewers see
    /// and answer the tasks assigned to them (and unassigned ones when the namespace allows);
    /// the core checks this on every path (`Engine::answer_as`).
    pub assign_to: Vec<String>,
    pub status: Status,
    pub response: Option<Value>,
    /// Who answered the task.
    pub answered_by: Option<String>,
    /// Through which channel the accepted answer came (`"api"`, `"cli"`, `"python"` ...).
    pub answered_via: Option<String>,
    /// Who cancelled the task, when it was cancelled.
    pub cancelled_by: Option<String>,
    /// Why the task was cancelled, when it was.
    pub cancel_reason: Option<String>,
    /// The reviewer working on the task (claimed in the dashboard or through the API); while
    /// set, only they (or an admin) may answer.
    #[serde(default)]
    pub claimed_by: Option<String>,
    #[serde(default, with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub claimed_at: Option<i64>,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    #[serde(with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<i64>,
    #[serde(with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<i64>,
    /// How the task's answers are verified after the response schema (docs/verification.md).
    #[serde(default)]
    pub verification: Option<Verification>,
    /// How many answers were rejected by verification (rules, LLM or SDK verifier).
    #[serde(default)]
    pub attempts: u32,
    /// Why each rejected answer was rejected, oldest first (shown to the human).
    #[serde(default)]
    pub rejections: Vec<Rejection>,
    /// While an answer is with the LLM verifier: until when (other answers wait until then).
    #[serde(default, with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub verifying_until: Option<i64>,
    /// The verification in progress (compare-and-set token; not part of the wire format).
    #[serde(skip)]
    #[schema(ignore)]
    pub verify_token: Option<String>,
    /// Who asked (an agent's name, or the person it acts for): `approvers.exclude_requester`
    /// keeps them from answering.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// The approval policy (docs/policies.md), when the task has one.
    #[serde(default)]
    pub policy: Option<crate::policy::Policy>,
    /// The votes so far on a task with approvers, oldest first (one per person).
    #[serde(default)]
    pub votes: Vec<crate::policy::Vote>,
    /// Reminders and escalation steps, in the order they are due; each fires once.
    #[serde(default)]
    pub timers: Vec<crate::policy::Timer>,
    /// Where the task's end is POSTed (a signed `task.ended` event through the outbox), as
    /// stored: normalized. Delivery plumbing, not part of the digest (docs/channels.md).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The W3C trace context the task's life is traced under (docs/deployment.md, "Tracing"):
    /// the agent's span when it passed one at creation, else the task's own `inloop.create`
    /// span (when tracing was on). Left out of the JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Task {
    /// Whether the task ended with its policy's default answer (`on_timeout` default): the
    /// status is `timed_out` and the response is the default.
    pub fn defaulted(&self) -> bool {
        self.status == Status::TimedOut && self.response.is_some()
    }
}

/// What a caller passes to create a task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewTask {
    /// Namespace; `"default"` when empty.
    pub namespace: Option<String>,
    /// Idempotency key; a fresh unique key when absent (every call then creates a task).
    pub key: Option<String>,
    pub title: String,
    pub payload: Value,
    pub payload_schema: Option<Value>,
    pub response_schema: Value,
    pub notify: Vec<String>,
    pub assign_to: Vec<String>,
    /// Time allowed for an answer, in milliseconds from creation.
    pub timeout_ms: Option<u64>,
    /// Who asks (an agent's name); recorded as the actor of the `created` audit row.
    pub requested_by: Option<String>,
    /// Rules and an optional LLM verifier that an answer must pass after the response schema
    /// (docs/verification.md). Part of the digest when present.
    pub verification: Option<Verification>,
    /// Who must answer and how many, reminders, escalation, what a timeout means
    /// (docs/policies.md). Part of the digest when present.
    pub policy: Option<crate::policy::Policy>,
    /// An http(s) URL that receives the task's final outcome (the signed `task.ended` event
    /// webhooks get) when the task ends. Only URLs the server's `[callbacks] allow` list
    /// permits are delivered (docs/channels.md). Not part of the digest: a replayed key keeps
    /// the task's first callback. Left out of the JSON when absent, so that a remote-mode
    /// create without one still works against a server that predates the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The agent's current W3C trace context (`00-<trace id>-<span id>-<flags>`): the spans of
    /// the task's life (`inloop.create`, `inloop.deliver`, `inloop.answer`, `inloop.resume`
    /// ...) become its children, so the agent's trace shows the wait. Stored with the task;
    /// not part of the digest (a replayed key keeps the first). Left out of the JSON when
    /// absent, like `callback_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The result of create-or-get: the task, and whether this call created it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Created {
    pub task: Task,
    /// `false` when the key already named this task (a replay).
    pub created: bool,
}

/// An answer from a person (or a program acting for one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub response: Value,
    /// Who answers; recorded on the task and in the audit trail.
    pub by: String,
    /// Through which channel the answer came (`"api"`, `"cli"`, `"python"` ...).
    #[serde(default = "default_channel")]
    pub channel: String,
}

fn default_channel() -> String {
    "api".into()
}

/// Filters for listing tasks. Every field is optional; results are newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListFilter {
    pub namespace: Option<String>,
    pub status: Option<Status>,
    pub key_prefix: Option<String>,
    /// Only tasks whose `assign_to` names this user, e-mail address or `role:NAME`.
    pub assignee: Option<String>,
    /// Only tasks created at or after this time (ms since epoch).
    pub created_after: Option<i64>,
    /// Only tasks created before this time (ms since epoch).
    pub created_before: Option<i64>,
    /// Page size, 1..=1000; 50 when absent.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page {
    pub items: Vec<Task>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One row of a task's append-only, hash-chained audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub task_id: Uuid,
    /// 1, 2, 3 ... within the task.
    pub seq: i64,
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub actor: Option<String>,
    pub channel: Option<String>,
    /// `created`, `answer_accepted`, `answer_refused`, `timed_out`, `cancelled`.
    pub kind: String,
    pub data: Value,
    /// Hash of the previous row of this task (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and the canonical JSON of this row's fields.
    pub hash: String,
}

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 (UTC, milliseconds) for a time in ms since the epoch.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Parses RFC 3339 into ms since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Error::InvalidArgument(format!("not an RFC 3339 time: {s:?} ({e})")))
}

pub(crate) mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ms(*ms))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::format_ms(*ms)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_task_without_a_callback_serializes_as_before() {
        let v = serde_json::to_value(NewTask::default()).unwrap();
        assert!(v.get("callback_url").is_none(), "{v}");
        let with = NewTask {
            callback_url: Some("https://engine.internal/x".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&with).unwrap();
        assert_eq!(v["callback_url"], "https://engine.internal/x");
        let back: NewTask = serde_json::from_value(v).unwrap();
        assert_eq!(back.callback_url, with.callback_url);
    }
}
