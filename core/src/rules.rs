//! The state machine, in one place: given a locked task and an event, what happens.
//!
//! Each function returns the [`Decision`] the store applies atomically, and the result the
//! caller sees. A refusal is still a decision (it writes an audit row and commits), so a
//! refused answer is recorded even though the caller gets an error.

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
    NewAudit {
        actor: None,
        channel: None,
        kind: kind::TIMED_OUT,
        data,
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
        audit: vec![NewAudit {
            actor: Some(by.to_string()),
            channel: Some(channel.to_string()),
            kind: kind::CANCELLED,
            data: json!({ "reason": reason }),
        }],
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

// ---------------------------------------------------------------------------------------------
// approval policies (docs/policies.md)

/// A schema-valid answer from an approver (access already checked) to a task with approvers:
/// it is recorded as that person's vote. The task completes when `required` distinct
/// approvals are in, or ends as rejected when the rejections reach the policy's `reject_on`;
/// the final answer is the vote that decided. The same vote again changes nothing; a
/// different vote from someone who already voted is refused (a vote cannot be changed).
pub fn vote(
    task: &Task,
    a: &Answer,
    voter: Option<&crate::access::Identity>,
    now: i64,
) -> (Decision, Result<()>) {
    let email = voter.and_then(|v| v.email.as_deref());
    let Some(approvers) = task.policy.as_ref().and_then(|p| p.approvers.as_ref()) else {
        return answer(task, a, now);
    };
    if is_overdue(task, now) || task.status != Status::Pending {
        return answer(task, a, now);
    }
    // Non-approval schemas (allowed with `required = 1`) count every answer as approving.
    let approve = policy::approval_of(&task.response_schema, &a.response).unwrap_or(true);
    // One vote per person, however they are named: a user answering as "alice" and later as
    // "alice@acme.com" is the same voter.
    let names: Vec<&str> = [Some(a.by.as_str()), voter.map(|v| v.name.as_str()), email]
        .into_iter()
        .flatten()
        .collect();
    let same = |v: &Vote| {
        std::iter::once(v.by.as_str())
            .chain(v.email.as_deref())
            .any(|x| names.iter().any(|n| n.eq_ignore_ascii_case(x)))
    };
    if let Some(prev) = task.votes.iter().find(|v| same(v)) {
        if prev.approve == approve && prev.response == a.response {
            return (Decision::default(), Ok(()));
        }
        let err = Error::Forbidden(format!(
            "{} already voted to {} at {}; a vote cannot be changed",
            prev.by,
            if prev.approve { "approve" } else { "reject" },
            crate::model::format_ms(prev.at)
        ));
        return refused(&a.by, &a.channel, "vote_changed", err);
    }
    let mut votes = task.votes.clone();
    votes.push(Vote {
        by: a.by.clone(),
        email: email.map(str::to_string),
        channel: a.channel.clone(),
        at: now,
        approve,
        response: a.response.clone(),
    });
    let (yes, no) = policy::tally(&votes);
    let recorded = NewAudit {
        actor: Some(a.by.clone()),
        channel: Some(a.channel.clone()),
        kind: kind::VOTE_RECORDED,
        data: json!({
            "approve": approve, "response": a.response, "approvals": yes, "rejections": no,
            "required": approvers.required,
        }),
    };
    let decided = if policy::rejected(approvers, no) {
        Some("rejected")
    } else if yes >= approvers.required {
        Some("approved")
    } else {
        None
    };
    let Some(decided) = decided else {
        return (
            Decision {
                votes: Some(votes),
                audit: vec![recorded],
                ..Default::default()
            },
            Ok(()),
        );
    };
    let (mut d, r) = answer(task, a, now);
    d.votes = Some(votes);
    d.audit.insert(0, recorded);
    if let Some(last) = d.audit.last_mut() {
        last.data["decided"] = json!(decided);
        last.data["approvals"] = json!(yes);
        last.data["rejections"] = json!(no);
    }
    (d, r)
}

/// The timer sweep on one task: every unfired timer due at `now` fires, once (the store
/// applies this under the task's row lock, so replicas racing on it fire it once). A reminder
/// re-notifies the task's targets; an escalation notifies its new targets (added to `notify`,
/// so they are updated when the task ends) and adds its approvers. A task past its deadline
/// times out instead. Returns how many timers fired.
pub fn fire_timers(task: &Task, now: i64) -> (Decision, usize) {
    if is_overdue(task, now) {
        return (expire(task, now).0, 0);
    }
    if task.status != Status::Pending {
        return (Decision::default(), 0);
    }
    let mut timers = task.timers.clone();
    let mut notify = task.notify.clone();
    let mut assign_to = task.assign_to.clone();
    let mut d = Decision::default();
    let mut fired = 0;
    for t in timers
        .iter_mut()
        .filter(|t| t.fired_at.is_none() && t.due_at <= now)
    {
        t.fired_at = Some(now);
        fired += 1;
        let late_ms = now - t.due_at;
        if t.kind == policy::REMINDER {
            let event = crate::store::outbox::reminder_event(t.index);
            d.deliveries
                .extend(crate::store::outbox::deliveries_to(task, &notify, &event));
            d.audit.push(NewAudit {
                actor: None,
                channel: None,
                kind: kind::REMINDER_SENT,
                data: json!({ "index": t.index, "notify": notify, "late_ms": late_ms }),
            });
            continue;
        }
        let Some(step) = task.policy.as_ref().and_then(|p| {
            t.index
                .checked_sub(1)
                .and_then(|i| p.escalate.get(i as usize))
        }) else {
            continue;
        };
        let new_targets: Vec<String> = step
            .notify
            .iter()
            .filter(|n| !notify.contains(n))
            .cloned()
            .collect();
        d.deliveries.extend(crate::store::outbox::deliveries_to(
            task,
            &new_targets,
            crate::store::outbox::CREATED,
        ));
        notify.extend(new_targets.iter().cloned());
        for a in &step.add_approvers {
            if !assign_to.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                assign_to.push(a.clone());
            }
        }
        d.audit.push(NewAudit {
            actor: None,
            channel: None,
            kind: kind::ESCALATED,
            data: json!({
                "index": t.index, "notify": step.notify, "add_approvers": step.add_approvers,
                "late_ms": late_ms,
            }),
        });
    }
    if fired == 0 {
        return (d, 0);
    }
    d.timers = Some(timers);
    if notify != task.notify {
        d.notify = Some(notify);
    }
    if assign_to != task.assign_to {
        d.assign_to = Some(assign_to);
    }
    (d, fired)
}

// ---------------------------------------------------------------------------------------------
// verification (docs/verification.md)

/// How long past the LLM verifier's own timeout its lease on a task lasts (the database write
/// of the verdict, a slow scheduler). After that, another answer may take the task over.
pub const LEASE_GRACE_MS: i64 = 10_000;

/// What submitting a schema-valid answer to a task with verification led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Accepted (the rules passed and there is no LLM verifier): the task is completed.
    Accepted,
    /// The answer holds the task's verification lease; call the LLM verifier outside the lock,
    /// then [`apply_verdict`] with this token.
    Verifying { token: String },
}

fn verify_state(t: &Task) -> VerifyState {
    VerifyState {
        attempts: t.attempts,
        rejections: t.rejections.clone(),
        token: None,
        until: None,
    }
}

fn verdict_row(
    j: &Judged,
    by: &str,
    channel: &str,
    attempt: u32,
    extra: serde_json::Value,
) -> NewAudit {
    let k = match j.verdict {
        Verdict::Pass => kind::VERIFICATION_PASSED,
        Verdict::Reject(_) => kind::VERIFICATION_REJECTED,
        Verdict::Inconclusive(_) => kind::VERIFICATION_INCONCLUSIVE,
    };
    let mut data = json!({
        "verifier": j.verifier, "model": j.model, "latency_ms": j.latency_ms,
        "verdict": j.verdict.as_str(), "reason": j.verdict.reason(), "attempt": attempt,
    });
    if let Some(r) = &j.rule {
        data["rule"] = json!(r);
    }
    if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
        d.extend(e);
    }
    NewAudit {
        actor: Some(by.to_string()),
        channel: Some(channel.to_string()),
        kind: k,
        data,
    }
}

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

fn accepted_row(a: &Answer) -> NewAudit {
    NewAudit {
        actor: Some(a.by.clone()),
        channel: Some(a.channel.clone()),
        kind: kind::ANSWER_ACCEPTED,
        data: json!({ "response": a.response }),
    }
}

fn policy_of(t: &Task) -> (u32, FailPolicy) {
    t.verification
        .as_ref()
        .map_or((3, FailPolicy::default()), |v| {
            (v.max_attempts, v.on_inconclusive)
        })
}

/// A schema-valid answer to a task that has verification, under the row lock. `rules` is the
/// deterministic rules' verdict; `llm` whether an LLM verifier follows; `token` and `until`
/// the lease it would take. Only one answer is with the LLM verifier at a time: another one
/// meanwhile is refused with `verification_pending` (audited).
pub fn submit(
    t: &Task,
    a: &Answer,
    rules: &Judged,
    llm: bool,
    lease: (String, i64),
    now: i64,
) -> (Decision, Result<Submitted>) {
    if is_overdue(t, now) || t.status != Status::Pending {
        let (d, r) = answer(t, a, now);
        return (d, r.map(|()| Submitted::Accepted));
    }
    if let (Some(_), Some(until)) = (&t.verify_token, t.verifying_until)
        && until > now
    {
        let err = Error::VerificationPending { id: t.id, until };
        return refused(&a.by, &a.channel, "verifying", err);
    }
    let attempt = t.attempts + 1;
    if let Verdict::Reject(_) = rules.verdict {
        let (d, r) = reject(t, &a.by, &a.channel, Some(&a.response), rules, now, false);
        return (d, r.map(|()| Submitted::Accepted));
    }
    let has_rules = t.verification.as_ref().is_some_and(|v| !v.rules.is_empty());
    let mut audit = Vec::new();
    if has_rules {
        audit.push(verdict_row(rules, &a.by, &a.channel, attempt, json!({})));
    }
    if llm {
        let (token, until) = lease;
        let spec = t.verification.as_ref().and_then(|v| v.llm.as_ref());
        audit.push(NewAudit {
            actor: Some(a.by.clone()),
            channel: Some(a.channel.clone()),
            kind: kind::VERIFICATION_STARTED,
            data: json!({
                "verifier": spec.map(|s| s.name()), "model": spec.map(|s| s.model.clone()),
                "attempt": attempt, "response": a.response, "until": crate::model::format_ms(until),
            }),
        });
        let decision = Decision {
            verify: Some(VerifyState {
                token: Some(token.clone()),
                until: Some(until),
                ..verify_state(t)
            }),
            audit,
            ..Default::default()
        };
        return (decision, Ok(Submitted::Verifying { token }));
    }
    audit.push(accepted_row(a));
    let decision = Decision {
        update: Some(accept_update(a, now)),
        verify: Some(verify_state(t)),
        audit,
        ..Default::default()
    };
    (decision, Ok(Submitted::Accepted))
}

/// The LLM verifier's verdict on the answer holding lease `token`, under the row lock
/// (compare-and-set on the token: a verdict whose lease was lost, or on a task that ended
/// meanwhile, is recorded but changes nothing).
pub fn apply_verdict(
    t: &Task,
    token: &str,
    a: &Answer,
    j: &Judged,
    now: i64,
) -> (Decision, Result<()>) {
    let attempt = t.attempts + 1;
    let holds = t.verify_token.as_deref() == Some(token);
    if !holds || is_overdue(t, now) || t.status != Status::Pending {
        let stale = verdict_row(j, &a.by, &a.channel, attempt, json!({ "applied": false }));
        let (mut d, r) = if t.status == Status::Pending && !is_overdue(t, now) {
            let err = Error::VerificationInconclusive {
                id: t.id,
                verifier: j.verifier.clone(),
                reason: "the verification took longer than its lease; answer again".into(),
            };
            (Decision::default(), Err(err))
        } else {
            answer(t, a, now)
        };
        d.audit.insert(0, stale);
        if holds {
            d.verify = Some(verify_state(t));
        }
        return (d, r);
    }
    let (_, policy) = policy_of(t);
    match &j.verdict {
        Verdict::Pass => (
            Decision {
                update: Some(accept_update(a, now)),
                verify: Some(verify_state(t)),
                audit: vec![
                    verdict_row(j, &a.by, &a.channel, attempt, json!({})),
                    accepted_row(a),
                ],
                ..Default::default()
            },
            Ok(()),
        ),
        Verdict::Reject(_) => reject(t, &a.by, &a.channel, Some(&a.response), j, now, false),
        Verdict::Inconclusive(reason) => match policy {
            FailPolicy::FailOpen => (
                Decision {
                    update: Some(accept_update(a, now)),
                    verify: Some(verify_state(t)),
                    audit: vec![
                        verdict_row(
                            j,
                            &a.by,
                            &a.channel,
                            attempt,
                            json!({"policy": "fail_open", "accepted": true}),
                        ),
                        accepted_row(a),
                    ],
                    ..Default::default()
                },
                Ok(()),
            ),
            FailPolicy::FailClosed => (
                Decision {
                    verify: Some(verify_state(t)),
                    audit: vec![verdict_row(
                        j,
                        &a.by,
                        &a.channel,
                        attempt,
                        json!({"policy": "fail_closed", "accepted": false}),
                    )],
                    ..Default::default()
                },
                Err(Error::VerificationInconclusive {
                    id: t.id,
                    verifier: j.verifier.clone(),
                    reason: reason.clone(),
                }),
            ),
        },
    }
}

/// A rejected answer: counts an attempt and records why. The task stays (or, for an answer
/// the agent's verifier rejected after completion, becomes again) pending, unless this was
/// the last attempt: then it ends as `verification_exhausted`. The error tells the human why.
pub fn reject(
    t: &Task,
    by: &str,
    channel: &str,
    response: Option<&serde_json::Value>,
    j: &Judged,
    now: i64,
    reopen: bool,
) -> (Decision, Result<()>) {
    let (max, _) = policy_of(t);
    let attempt = t.attempts + 1;
    let reason = j.verdict.reason().unwrap_or("rejected").to_string();
    let mut rejections = t.rejections.clone();
    rejections.push(Rejection {
        attempt,
        verifier: j.verifier.clone(),
        reason: reason.clone(),
        by: Some(by.to_string()),
        at: now,
    });
    let row = verdict_row(
        j,
        by,
        channel,
        attempt,
        json!({ "max_attempts": max, "response": response }),
    );
    let exhausted = attempt >= max;
    let update = if exhausted {
        Some(Update {
            status: Status::VerificationExhausted,
            response: None,
            answered_by: None,
            answered_via: None,
            cancelled_by: None,
            cancel_reason: None,
            ended_at: Some(now),
        })
    } else if reopen {
        Some(reopen_update())
    } else {
        None
    };
    let mut audit = vec![row];
    if exhausted {
        audit.push(NewAudit {
            actor: None,
            channel: None,
            kind: kind::VERIFICATION_EXHAUSTED,
            data: json!({ "attempts": attempt, "reasons": rejections.iter().map(|r| &r.reason).collect::<Vec<_>>() }),
        });
    } else if reopen {
        audit.push(reopened_row(by, channel));
    }
    let err = if exhausted {
        Error::VerificationExhausted {
            id: t.id,
            at: now,
            rejections: rejections.clone(),
        }
    } else {
        Error::VerificationRejected {
            id: t.id,
            verifier: j.verifier.clone(),
            reason,
            rule: j.rule.clone(),
            attempt,
            max_attempts: max,
        }
    };
    let decision = Decision {
        update,
        verify: Some(VerifyState {
            attempts: attempt,
            rejections,
            token: None,
            until: None,
        }),
        audit,
        ..Default::default()
    };
    (decision, Err(err))
}

fn reopen_update() -> Update {
    Update {
        status: Status::Pending,
        response: None,
        answered_by: None,
        answered_via: None,
        cancelled_by: None,
        cancel_reason: None,
        ended_at: None,
    }
}

fn reopened_row(by: &str, channel: &str) -> NewAudit {
    NewAudit {
        actor: Some(by.to_string()),
        channel: Some(channel.to_string()),
        kind: kind::ANSWER_REOPENED,
        data: json!({}),
    }
}

/// The agent's own (SDK) verifier judged the completed task's answer. `expected_attempts` is
/// the task's `attempts` as the agent read it with the answer: a compare-and-set, so a verdict
/// on an answer that was already judged (by a retried agent) changes nothing and is a
/// conflict. A rejection reopens the task (or exhausts it); an inconclusive verdict follows
/// the fail policy (fail-closed reopens the task without counting an attempt).
pub fn agent_verdict(
    t: &Task,
    expected_attempts: u32,
    j: &Judged,
    by: &str,
    channel: &str,
    now: i64,
) -> (Decision, Result<()>) {
    if t.status != Status::Completed || t.attempts != expected_attempts {
        let err = if t.status == Status::Completed || t.status == Status::Pending {
            Error::Conflict {
                id: t.id,
                status: t.status,
                by: t.answered_by.clone(),
                at: t.updated_at,
            }
        } else {
            ended_error(t)
        };
        return (Decision::default(), Err(err));
    }
    let answered_by = t.answered_by.clone().unwrap_or_else(|| by.to_string());
    let attempt = t.attempts + 1;
    let (_, policy) = policy_of(t);
    match &j.verdict {
        Verdict::Pass => (
            Decision {
                audit: vec![verdict_row(
                    j,
                    by,
                    channel,
                    attempt,
                    json!({ "answered_by": answered_by }),
                )],
                ..Default::default()
            },
            Ok(()),
        ),
        Verdict::Reject(_) => {
            let (d, r) = reject(t, &answered_by, channel, t.response.as_ref(), j, now, true);
            (d, r)
        }
        Verdict::Inconclusive(_) => {
            let fail_open = policy == FailPolicy::FailOpen;
            let mut audit = vec![verdict_row(
                j,
                by,
                channel,
                attempt,
                json!({ "policy": if fail_open { "fail_open" } else { "fail_closed" }, "accepted": fail_open }),
            )];
            if fail_open {
                return (
                    Decision {
                        audit,
                        ..Default::default()
                    },
                    Ok(()),
                );
            }
            audit.push(reopened_row(by, channel));
            (
                Decision {
                    update: Some(reopen_update()),
                    verify: Some(verify_state(t)),
                    audit,
                    ..Default::default()
                },
                Ok(()),
            )
        }
    }
}
