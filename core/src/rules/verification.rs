//! Verification (docs/verification.md): submitting an answer, applying the verifier's
//! verdict, a reviewer's rejection and the agent's own verdict.

use super::*;

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
    NewAudit::by(by, channel, k, data)
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
        let data = json!({
            "verifier": spec.map(|s| s.name()), "model": spec.map(|s| s.model.clone()),
            "attempt": attempt, "response": a.response, "until": crate::model::format_ms(until),
        });
        audit.push(NewAudit::by(
            &a.by,
            &a.channel,
            kind::VERIFICATION_STARTED,
            data,
        ));
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
        audit.push(NewAudit::system(kind::VERIFICATION_EXHAUSTED, json!({ "attempts": attempt, "reasons": rejections.iter().map(|r| &r.reason).collect::<Vec<_>>() })));
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
    NewAudit::by(by, channel, kind::ANSWER_REOPENED, json!({}))
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
