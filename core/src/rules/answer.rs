//! Answering a pending task: accepted, refused (ended, overdue, invalid, no access).

use super::*;

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
            verify: None,
            update: Some(timeout_update(task, now)),
            audit: vec![
                timeout_audit(task),
                refusal(
                    &a.by,
                    &a.channel,
                    "late",
                    json!({ "message": late.to_string() }),
                ),
            ],
            ..Default::default()
        };
        return (decision, Err(late));
    }
    if task.status != Status::Pending {
        let err = ended_error(task);
        return refused(&a.by, &a.channel, "ended", err);
    }
    let decision = Decision {
        claim: None,
        verify: None,
        update: Some(accept_update(a, now)),
        audit: vec![accepted_row(a)],
        ..Default::default()
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
            verify: None,
            update: None,
            audit: vec![row],
            ..Default::default()
        },
        Err(error),
    )
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
