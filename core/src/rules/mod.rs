//! The state machine, in one place: given a locked task and an event, what happens.
//!
//! Each function returns the [`Decision`] the store applies atomically, and the result the
//! caller sees. A refusal is still a decision (it writes an audit row and commits), so a
//! refused answer is recorded even though the caller gets an error.
//!
//! One file per kind of event: `answer`, `end` (cancel, expiry), `claims`, `policies` (votes,
//! escalation and reminder timers), `verification`; the helpers they share (timeouts,
//! refusals, a task's outcome) are here.

mod answer;
mod claims;
mod end;
mod policies;
mod verification;

pub use answer::{answer, invalid_answer, refuse_access};
pub use claims::{claim, release};
pub use end::{cancel, expire};
pub use policies::{fire_timers, vote};
pub use verification::{LEASE_GRACE_MS, Submitted, agent_verdict, apply_verdict, reject, submit};

use serde_json::json;

use crate::audit::kind;
use crate::error::{Error, FieldError, Result};
use crate::model::{Answer, Status, Task};
use crate::policy::{self, OnTimeout, Vote};
use crate::store::{Decision, NewAudit, Update, VerifyState};
use crate::verify::{FailPolicy, Judged, Rejection, Verdict};

/// Whether an audit kind ends its task (the waker only cares about these).
pub fn ends_task(k: &str) -> bool {
    k == kind::ANSWER_ACCEPTED
        || k == kind::TIMED_OUT
        || k == kind::CANCELLED
        || k == kind::VERIFICATION_EXHAUSTED
}

/// The error for acting on a task that has ended.
pub fn ended_error(task: &Task) -> Error {
    let at = task.ended_at.unwrap_or(task.updated_at);
    match task.status {
        Status::TimedOut => Error::Conflict {
            id: task.id,
            status: task.status,
            by: None,
            at: task.deadline.unwrap_or(at),
        },
        Status::Cancelled => Error::Conflict {
            id: task.id,
            status: task.status,
            by: task.cancelled_by.clone(),
            at,
        },
        _ => Error::Conflict {
            id: task.id,
            status: task.status,
            by: task.answered_by.clone(),
            at,
        },
    }
}

/// What a waiting agent gets for an ended task: the task when answered, else the error.
pub fn outcome(task: Task) -> Result<Task> {
    match task.status {
        Status::Completed => Ok(task),
        // The policy's default answer, marked as such (`Task::defaulted`).
        Status::TimedOut if task.response.is_some() => Ok(task),
        Status::TimedOut => Err(Error::TimedOut {
            id: task.id,
            at: task.deadline.or(task.ended_at).unwrap_or(task.updated_at),
        }),
        Status::Cancelled => Err(Error::Cancelled {
            id: task.id,
            by: task.cancelled_by,
            at: task.ended_at.unwrap_or(task.updated_at),
            reason: task.cancel_reason,
        }),
        Status::VerificationExhausted => Err(Error::VerificationExhausted {
            id: task.id,
            at: task.ended_at.unwrap_or(task.updated_at),
            rejections: task.rejections,
        }),
        Status::Pending => Err(ended_error(&task)),
    }
}

fn is_overdue(task: &Task, now: i64) -> bool {
    task.status == Status::Pending && task.deadline.is_some_and(|d| d <= now)
}

/// The task times out; with an `on_timeout` default, with that answer (marked by
/// `answered_via = "timeout"`, never by a person).
fn timeout_update(task: &Task, now: i64) -> Update {
    let default = default_answer(task);
    Update {
        status: Status::TimedOut,
        answered_via: default.map(|_| "timeout".to_string()),
        response: default.cloned(),
        answered_by: None,
        cancelled_by: None,
        cancel_reason: None,
        ended_at: Some(now),
    }
}

fn default_answer(task: &Task) -> Option<&serde_json::Value> {
    match task.policy.as_ref().map(|p| &p.on_timeout) {
        Some(OnTimeout::Default(v)) => Some(v),
        _ => None,
    }
}

fn timeout_audit(task: &Task) -> NewAudit {
    let mut data = json!({ "deadline": task.deadline.map(crate::model::format_ms) });
    if let Some(v) = default_answer(task) {
        data["default"] = v.clone();
    }
    NewAudit::system(kind::TIMED_OUT, data)
}

/// A refusal row: who tried, why.
fn refusal(answer_by: &str, channel: &str, reason: &str, data: serde_json::Value) -> NewAudit {
    let mut d = json!({ "reason": reason });
    if let (Some(obj), serde_json::Value::Object(extra)) = (d.as_object_mut(), data) {
        obj.extend(extra);
    }
    NewAudit::by(answer_by, channel, kind::ANSWER_REFUSED, d)
}

/// A refused answer: nothing changes but an audit row (`answer_refused`, with `reason` and the
/// error's message), and the caller gets `err`.
fn refused<T>(by: &str, channel: &str, reason: &str, err: Error) -> (Decision, Result<T>) {
    let row = refusal(by, channel, reason, json!({ "message": err.to_string() }));
    (
        Decision {
            audit: vec![row],
            ..Default::default()
        },
        Err(err),
    )
}

/// The update that completes a task with this answer.
fn accept_update(a: &Answer, now: i64) -> Update {
    Update {
        status: Status::Completed,
        response: Some(a.response.clone()),
        answered_by: Some(a.by.clone()),
        answered_via: Some(a.channel.clone()),
        cancelled_by: None,
        cancel_reason: None,
        ended_at: Some(now),
    }
}

/// The audit row of an accepted answer.
fn accepted_row(a: &Answer) -> NewAudit {
    NewAudit::by(
        &a.by,
        &a.channel,
        kind::ANSWER_ACCEPTED,
        json!({ "response": a.response }),
    )
}
