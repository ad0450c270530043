//! The rules of an effect: pure functions of the locked row (`None`: no row yet), each
//! returning the [`Step`] the store applies and the caller's answer.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Begin, Effect, EffectAudit, EffectState, Resolve, ResolveAction, Step, kind};
use crate::error::{Error, Result};
use crate::schema::{canonical_json, sha256_hex};

pub(super) fn missing(ns: &str, key: &str) -> Error {
    Error::Missing(format!("effect {key:?} in namespace {ns:?}"))
}

pub(super) fn conflict(e: &Effect, reason: impl Into<String>) -> Error {
    Error::EffectConflict {
        namespace: e.namespace.clone(),
        key: e.key.clone(),
        state: e.state.as_str().to_string(),
        reason: reason.into(),
    }
}

pub(super) fn result_digest(v: &Value) -> String {
    sha256_hex(&canonical_json(v))
}

/// A begin: the first caller (or the first after a failure or an allowed retry) runs; a done
/// effect returns its result; a running one is in doubt, unless `token` is the running
/// attempt's own (a retried begin whose answer was lost: it runs).
pub(super) fn begin(
    cur: Option<&Effect>,
    (ns, key): (&str, &str),
    token: &str,
    by: Option<&str>,
    now: i64,
) -> (Step, Result<Begin>) {
    let started = |attempt: u32| EffectAudit {
        actor: by.map(str::to_string),
        kind: kind::STARTED,
        data: json!({ "attempt": attempt }),
    };
    let run = |attempt: u32| Begin::Run {
        token: token.to_string(),
        attempt,
    };
    match cur {
        None => {
            let e = Effect {
                id: Uuid::now_v7(),
                namespace: ns.to_string(),
                key: key.to_string(),
                state: EffectState::Running,
                attempt: 1,
                token: Some(token.to_string()),
                started_at: now,
                started_by: by.map(str::to_string),
                finished_at: None,
                result: None,
                error: None,
                resolved_by: None,
                resolved_at: None,
                created_at: now,
                updated_at: now,
            };
            let step = Step {
                next: Some(e),
                audit: vec![started(1)],
            };
            (step, Ok(run(1)))
        }
        Some(e) => match e.state {
            EffectState::Done => (
                Step::default(),
                Ok(Begin::Done {
                    result: e.result.clone().unwrap_or(Value::Null),
                    finished_at: e.finished_at.unwrap_or(e.updated_at),
                }),
            ),
            EffectState::Running if e.token.as_deref() == Some(token) => {
                (Step::default(), Ok(run(e.attempt)))
            }
            EffectState::Running => (Step::default(), Err(e.in_doubt())),
            EffectState::Failed | EffectState::RetryAllowed => {
                let attempt = e.attempt.saturating_add(1);
                let next = Effect {
                    state: EffectState::Running,
                    attempt,
                    token: Some(token.to_string()),
                    started_at: now,
                    started_by: by.map(str::to_string),
                    finished_at: None,
                    result: None,
                    error: None,
                    resolved_by: None,
                    resolved_at: None,
                    updated_at: now,
                    ..e.clone()
                };
                let step = Step {
                    next: Some(next),
                    audit: vec![started(attempt)],
                };
                (step, Ok(run(attempt)))
            }
        },
    }
}

/// A finish: only the running attempt's token records the result. A repeat of the same
/// finish (same token, same result) changes nothing and succeeds.
pub(super) fn finish(
    cur: Option<&Effect>,
    (ns, key): (&str, &str),
    token: &str,
    result: &Value,
    now: i64,
) -> (Step, Result<()>) {
    let Some(e) = cur else {
        return (Step::default(), Err(missing(ns, key)));
    };
    let mine = e.token.as_deref() == Some(token);
    match e.state {
        EffectState::Running if mine => {
            let next = Effect {
                state: EffectState::Done,
                finished_at: Some(now),
                result: Some(result.clone()),
                error: None,
                updated_at: now,
                ..e.clone()
            };
            let data = json!({ "attempt": e.attempt, "result_sha256": result_digest(result) });
            settle(e, next, kind::DONE, data)
        }
        EffectState::Done if mine => {
            let same = e
                .result
                .as_ref()
                .is_some_and(|r| canonical_json(r) == canonical_json(result));
            if same {
                (Step::default(), Ok(()))
            } else {
                let err = conflict(e, "this attempt already recorded a different result");
                (Step::default(), Err(err))
            }
        }
        _ => (Step::default(), Err(lost(e, "record a result"))),
    }
}

/// The running attempt's own end (a finish or an abort): the effect's next row and one audit
/// row in the name of whoever started the attempt.
fn settle(e: &Effect, next: Effect, kind: &'static str, data: Value) -> (Step, Result<()>) {
    let audit = EffectAudit {
        actor: e.started_by.clone(),
        kind,
        data,
    };
    let step = Step {
        next: Some(next),
        audit: vec![audit],
    };
    (step, Ok(()))
}

/// Why a token no longer holds the effect.
pub(super) fn lost(e: &Effect, what: &str) -> Error {
    let reason = match (e.state, &e.resolved_by) {
        (EffectState::Done, Some(by)) => {
            format!("a person ({by}) marked it done; this attempt can no longer {what}")
        }
        (EffectState::RetryAllowed, Some(by)) => {
            format!("a person ({by}) allowed a retry; this attempt can no longer {what}")
        }
        (EffectState::Running, _) => format!(
            "attempt {} holds it now; this attempt can no longer {what}",
            e.attempt
        ),
        _ => format!("this attempt does not hold it and can no longer {what}"),
    };
    conflict(e, reason)
}

/// An abort (the function raised): only the running attempt's token releases the effect. A
/// repeat of the same abort changes nothing and succeeds.
pub(super) fn abort(
    cur: Option<&Effect>,
    (ns, key): (&str, &str),
    token: &str,
    error: &str,
    now: i64,
) -> (Step, Result<()>) {
    let Some(e) = cur else {
        return (Step::default(), Err(missing(ns, key)));
    };
    let mine = e.token.as_deref() == Some(token);
    match e.state {
        EffectState::Running if mine => {
            let next = Effect {
                state: EffectState::Failed,
                finished_at: Some(now),
                error: Some(error.to_string()),
                updated_at: now,
                ..e.clone()
            };
            settle(
                e,
                next,
                kind::FAILED,
                json!({ "attempt": e.attempt, "error": error }),
            )
        }
        EffectState::Failed if mine => (Step::default(), Ok(())),
        _ => (Step::default(), Err(lost(e, "be released"))),
    }
}

/// A person's resolution of an effect in doubt (`running`), for the attempt they looked at.
pub(super) fn resolve(
    cur: Option<&Effect>,
    (ns, key): (&str, &str),
    r: &Resolve,
    by: &str,
    now: i64,
) -> (Step, Result<()>) {
    let Some(e) = cur else {
        return (Step::default(), Err(missing(ns, key)));
    };
    if e.state != EffectState::Running {
        let reason = match &e.resolved_by {
            Some(who) => format!("only an effect in doubt can be resolved (resolved by {who})"),
            None => "only an effect in doubt can be resolved".to_string(),
        };
        return (Step::default(), Err(conflict(e, reason)));
    }
    if let Some(a) = r.attempt
        && a != e.attempt
    {
        let reason = format!(
            "attempt {a} is not the one in doubt (attempt {} is): look again before resolving",
            e.attempt
        );
        return (Step::default(), Err(conflict(e, reason)));
    }
    let note = r.note.as_deref();
    let (next, audit) = match r.action {
        ResolveAction::MarkDone => {
            let result = r.result.clone().unwrap_or(Value::Null);
            let audit = EffectAudit {
                actor: Some(by.to_string()),
                kind: kind::MARKED_DONE,
                data: json!({ "attempt": e.attempt, "result": result, "note": note }),
            };
            let next = Effect {
                state: EffectState::Done,
                token: None,
                finished_at: Some(now),
                result: Some(result),
                resolved_by: Some(by.to_string()),
                resolved_at: Some(now),
                updated_at: now,
                ..e.clone()
            };
            (next, audit)
        }
        ResolveAction::AllowRetry => {
            let audit = EffectAudit {
                actor: Some(by.to_string()),
                kind: kind::RETRY_ALLOWED,
                data: json!({ "attempt": e.attempt, "note": note }),
            };
            let next = Effect {
                state: EffectState::RetryAllowed,
                token: None,
                resolved_by: Some(by.to_string()),
                resolved_at: Some(now),
                updated_at: now,
                ..e.clone()
            };
            (next, audit)
        }
    };
    let step = Step {
        next: Some(next),
        audit: vec![audit],
    };
    (step, Ok(()))
}
