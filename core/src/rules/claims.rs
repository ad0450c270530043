//! Claims: a reviewer takes a pending task for a while, or gives it back.

use super::*;

/// The error and decision for claiming or releasing a task that is not pending (an overdue
/// one times out here, like a cancel).
fn not_pending(task: &Task, now: i64) -> Option<(Decision, Result<()>)> {
    if is_overdue(task, now) {
        let d = Decision {
            update: Some(timeout_update(task, now)),
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
        audit: vec![NewAudit::by(by, channel, kind::CLAIMED, json!({}))],
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
        audit: vec![NewAudit::by(
            by,
            channel,
            kind::RELEASED,
            json!({ "claimed_by": holder }),
        )],
        ..Default::default()
    };
    (decision, Ok(()))
}
