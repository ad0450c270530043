//! The state machine, in one place: given a locked task and an event, what happens.
//!
//! Each function returns the [`Decision`] the store applies atomically, and the result the
//! caller sees. A refusal is still a decision (it writes an audit row and commits), so a
//! refused answer is recorded even though the caller gets an error.

use serde_json::json;

use crate::audit::kind;
use crate::error::{Error, FieldError, Result};
use crate::model::{Answer, Status, Task};
use crate::store::{Decision, NewAudit, Update};

/// Whether an audit kind ends its task (the waker only cares about these).
pub fn ends_task(k: &str) -> bool {
    k == kind::ANSWER_ACCEPTED || k == kind::TIMED_OUT || k == kind::CANCELLED
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
        Status::VerificationExhausted | Status::Pending => Err(ended_error(&task)),
    }
}

fn is_overdue(task: &Task, now: i64) -> bool {
    task.status == Status::Pending && task.deadline.is_some_and(|d| d <= now)
}

fn timeout_update(now: i64) -> Update {
    Update {
        status: Status::TimedOut,
        response: None,
        answered_by: None,
        answered_via: None,
        cancelled_by: None,
        cancel_reason: None,
        ended_at: Some(now),
    }
}

fn timeout_audit(task: &Task) -> NewAudit {
    NewAudit {
        actor: None,
        channel: None,
        kind: kind::TIMED_OUT,
        data: json!({ "deadline": task.deadline.map(crate::model::format_ms) }),
    }
}

/// A refusal row: who tried, why.
fn refusal(answer_by: &str, channel: &str, reason: &str, data: serde_json::Value) -> NewAudit {
    let mut d = json!({ "reason": reason });
    if let (Some(obj), serde_json::Value::Object(extra)) = (d.as_object_mut(), data) {
        obj.extend(extra);
    }
    NewAudit {
        actor: Some(answer_by.to_string()),
        channel: Some(channel.to_string()),
        kind: kind::ANSWER_REFUSED,
        data: d,
    }
}

/// A schema-valid answer arrives. Accepted once: only a pending task within its deadline
/// moves to `completed`; anything else is refused, audited, and reported as a conflict.
pub fn answer(task: &Task, a: &Answer, now: i64) -> (Decision, Result<()>) {
    if is_overdue(task, now) {
        let late = Error::Conflict {
            id: task.id,
            status: Status::TimedOut,
            by: None,
            at: task.deadline.unwrap_or(now),
        };
        let decision = Decision {
            claim: None,
            update: Some(timeout_update(now)),
            audit: vec![
                timeout_audit(task),
                refusal(
                    &a.by,
                    &a.channel,
                    "late",
                    json!({ "message": late.to_string() }),
                ),
            ],
        };
        return (decision, Err(late));
    }
    if task.status != Status::Pending {
        let err = ended_error(task);
        let row = refusal(
            &a.by,
            &a.channel,
            "ended",
            json!({ "message": err.to_string() }),
        );
        return (
            Decision {
                claim: None,
                update: None,
                audit: vec![row],
            },
            Err(err),
        );
    }
    let decision = Decision {
        claim: None,
        update: Some(Update {
            status: Status::Completed,
            response: Some(a.response.clone()),
            answered_by: Some(a.by.clone()),
            answered_via: Some(a.channel.clone()),
            cancelled_by: None,
            cancel_reason: None,
            ended_at: Some(now),
        }),
        audit: vec![NewAudit {
            actor: Some(a.by.clone()),
            channel: Some(a.channel.clone()),
            kind: kind::ANSWER_ACCEPTED,
            data: json!({ "response": a.response }),
        }],
    };
    (decision, Ok(()))
}

/// An answer that failed validation: the task stays pending and the refusal is audited (the
/// field errors, not the rejected document). A task that has ended reports that instead.
pub fn invalid_answer(
    task: &Task,
    by: &str,
    channel: &str,
    error: Error,
    now: i64,
) -> (Decision, Result<()>) {
    if is_overdue(task, now) || task.status != Status::Pending {
        // The task's end is the more useful news; the invalid answer is recorded either way.
        let (mut d, r) = answer(
            task,
            &Answer {
                response: serde_json::Value::Null,
                by: by.into(),
                channel: channel.into(),
            },
            now,
        );
        if let Some(last) = d.audit.last_mut() {
            last.data["invalid"] = json!(true);
        }
        return (d, r);
    }
    let errors: &[FieldError] = match &error {
        Error::InvalidAnswer { errors } => errors,
        _ => &[],
    };
    let row = refusal(
        by,
        channel,
        "invalid",
        json!({ "code": error.code(), "message": error.to_string(), "errors": errors }),
    );
    (
        Decision {
            claim: None,
            update: None,
            audit: vec![row],
        },
        Err(error),
    )
}

/// A cancel request: only a pending task can be cancelled.
pub fn cancel(
    task: &Task,
    by: &str,
    channel: &str,
    reason: Option<&str>,
    now: i64,
) -> (Decision, Result<()>) {
    if is_overdue(task, now) {
        let d = Decision {
            claim: None,
            update: Some(timeout_update(now)),
            audit: vec![timeout_audit(task)],
        };
        let t = Task {
            status: Status::TimedOut,
            ended_at: Some(now),
            ..task.clone()
        };
        return (d, Err(ended_error(&t)));
    }
    if task.status != Status::Pending {
        return (Decision::default(), Err(ended_error(task)));
    }
    let decision = Decision {
        claim: None,
        update: Some(Update {
            status: Status::Cancelled,
            response: None,
            answered_by: None,
            answered_via: None,
            cancelled_by: Some(by.to_string()),
            cancel_reason: reason.map(str::to_string),
            ended_at: Some(now),
        }),
        audit: vec![NewAudit {
            actor: Some(by.to_string()),
            channel: Some(channel.to_string()),
            kind: kind::CANCELLED,
            data: json!({ "reason": reason }),
        }],
    };
    (decision, Ok(()))
}

/// The deadline check: a pending task past its deadline times out, once.
pub fn expire(task: &Task, now: i64) -> (Decision, ()) {
    if is_overdue(task, now) {
        (
            Decision {
                claim: None,
                update: Some(timeout_update(now)),
                audit: vec![timeout_audit(task)],
            },
            (),
        )
    } else {
        (Decision::default(), ())
    }
}

/// An action refused by the access rules. A task `who` may not see stays invisible (no audit
/// row); a visible task records the refused answer (who tried, why).
pub fn refuse_access(task: &Task, by: &str, channel: &str, err: Error) -> (Decision, Result<()>) {
    if matches!(err, Error::NotFound(_)) {
        return (Decision::default(), Err(err));
    }
    let _ = task;
    let row = refusal(
        by,
        channel,
        "forbidden",
        json!({ "code": err.code(), "message": err.to_string() }),
    );
    (
        Decision {
            audit: vec![row],
            ..Default::default()
        },
        Err(err),
    )
}

/// The error and decision for claiming or releasing a task that is not pending (an overdue
/// one times out here, like a cancel).
fn not_pending(task: &Task, now: i64) -> Option<(Decision, Result<()>)> {
    if is_overdue(task, now) {
        let d = Decision {
            update: Some(timeout_update(now)),
            audit: vec![timeout_audit(task)],
            ..Default::default()
        };
        let t = Task {
            status: Status::TimedOut,
            ended_at: Some(now),
            ..task.clone()
        };
        return Some((d, Err(ended_error(&t))));
    }
    (task.status != Status::Pending).then(|| (Decision::default(), Err(ended_error(task))))
}

/// `by` takes the pending task (access already checked). Claiming one's own claim again
/// changes nothing.
pub fn claim(task: &Task, by: &str, channel: &str, now: i64) -> (Decision, Result<()>) {
    if let Some(r) = not_pending(task, now) {
        return r;
    }
    if task.claimed_by.as_deref() == Some(by) {
        return (Decision::default(), Ok(()));
    }
    let decision = Decision {
        claim: Some(Some(by.to_string())),
        audit: vec![NewAudit {
            actor: Some(by.to_string()),
            channel: Some(channel.to_string()),
            kind: kind::CLAIMED,
            data: json!({}),
        }],
        ..Default::default()
    };
    (decision, Ok(()))
}

/// The claim on the pending task is released (access already checked). Releasing an
/// unclaimed task changes nothing.
pub fn release(task: &Task, by: &str, channel: &str, now: i64) -> (Decision, Result<()>) {
    if let Some(r) = not_pending(task, now) {
        return r;
    }
    let Some(holder) = task.claimed_by.as_deref() else {
        return (Decision::default(), Ok(()));
    };
    let decision = Decision {
        claim: Some(None),
        audit: vec![NewAudit {
            actor: Some(by.to_string()),
            channel: Some(channel.to_string()),
            kind: kind::RELEASED,
            data: json!({ "claimed_by": holder }),
        }],
        ..Default::default()
    };
    (decision, Ok(()))
}
