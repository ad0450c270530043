//! Ending a task without an answer: cancelled by someone, or expired at its deadline.

use super::*;

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
            verify: None,
            update: Some(timeout_update(task, now)),
            audit: vec![timeout_audit(task)],
            ..Default::default()
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
        verify: None,
        update: Some(Update {
            status: Status::Cancelled,
            response: None,
            answered_by: None,
            answered_via: None,
            cancelled_by: Some(by.to_string()),
            cancel_reason: reason.map(str::to_string),
            ended_at: Some(now),
        }),
        audit: vec![NewAudit::by(
            by,
            channel,
            kind::CANCELLED,
            json!({ "reason": reason }),
        )],
        ..Default::default()
    };
    (decision, Ok(()))
}

/// The deadline check: a pending task past its deadline times out, once.
pub fn expire(task: &Task, now: i64) -> (Decision, ()) {
    if is_overdue(task, now) {
        (
            Decision {
                claim: None,
                verify: None,
                update: Some(timeout_update(task, now)),
                audit: vec![timeout_audit(task)],
                ..Default::default()
            },
            (),
        )
    } else {
        (Decision::default(), ())
    }
}
