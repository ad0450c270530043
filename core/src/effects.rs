//! Exactly-once effects: what `once(key, fn)` in the SDKs stands on (`docs/policies.md`).
//!
//! An effect is a row keyed by `(namespace, key)`. Before the SDK runs `fn` it *begins* the
//! effect: the first caller gets [`Begin::Run`] with a random attempt token and the row becomes
//! `running`; after `fn` returns, the SDK *finishes* it with the result (`done`), or, when `fn`
//! raised, *aborts* it (`failed`: released, so a later call runs `fn` again). A caller that
//! finds the effect `done` gets the recorded result ([`Begin::Done`]) and never runs `fn`. A
//! caller that finds it `running` under another attempt gets [`Error::EffectInDoubt`]: nobody
//! can tell a process that died inside `fn` from one still running it, so the effect is never
//! re-run silently. A person resolves it ([`Engine::effect_resolve`]): mark it done (with a
//! result) or allow a retry. Every step is a compare-and-set on the locked row (the rules
//! below are pure functions of the row, applied by [`crate::store::Store::effect_transition`])
//! and is written to the effect's append-only, hash-chained audit trail.
//!
//! There is deliberately no lease: a lease that expires cannot tell a dead process from a
//! paused or partitioned one, and re-running on expiry would be the silent double effect this
//! exists to prevent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access::Principal;
use crate::audit::{ChainCheck, GENESIS, row_hash};
use crate::engine::{Engine, check_namespace, check_text};
use crate::error::{Error, Result};
use crate::model::{AuditEvent, now_ms};
use crate::schema::{self, canonical_json, sha256_hex};
use crate::users::Role;

/// The audit kinds of effects.
pub mod kind {
    /// An attempt began (`data.attempt`, the process in the actor).
    pub const STARTED: &str = "started";
    /// The attempt recorded its result.
    pub const DONE: &str = "done";
    /// The function raised; the SDK released the effect (`data.error`).
    pub const FAILED: &str = "failed";
    /// A person marked the effect in doubt as done (`data.result`, `data.note`).
    pub const MARKED_DONE: &str = "marked_done";
    /// A person allowed another attempt of the effect in doubt (`data.note`).
    pub const RETRY_ALLOWED: &str = "retry_allowed";
}

/// Where an effect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectState {
    /// An attempt began and has not recorded an outcome: in doubt to every other caller.
    Running,
    /// The result is recorded; every later call returns it.
    Done,
    /// The function raised and the SDK released the effect: the next call runs it again.
    Failed,
    /// A person allowed another attempt: the next call runs it again.
    RetryAllowed,
}

impl EffectState {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectState::Running => "running",
            EffectState::Done => "done",
            EffectState::Failed => "failed",
            EffectState::RetryAllowed => "retry_allowed",
        }
    }
}

impl std::str::FromStr for EffectState {
    type Err = Error;
    /// A state name; `in_doubt` is another name for `running` (how other callers see it).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "running" | "in_doubt" => EffectState::Running,
            "done" => EffectState::Done,
            "failed" => EffectState::Failed,
            "retry_allowed" => EffectState::RetryAllowed,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown effect state {other:?} (expected in_doubt, running, done, failed or retry_allowed)"
                )));
            }
        })
    }
}

impl std::fmt::Display for EffectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An effect, as stored (without its attempt token, which only the attempt holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Effect {
    pub id: Uuid,
    pub namespace: String,
    pub key: String,
    pub state: EffectState,
    /// How many attempts began (1 for the first).
    pub attempt: u32,
    /// The current attempt's token (compare-and-set; never sent over the API).
    #[serde(skip)]
    #[schema(ignore)]
    pub token: Option<String>,
    /// When the current (or last) attempt began.
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: i64,
    /// Who or which process began it (the SDKs send `python:HOST:PID` / `node:HOST:PID`).
    pub started_by: Option<String>,
    #[serde(default, with = "crate::model::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<i64>,
    /// The recorded result (JSON), once `done`.
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
    /// Why the last attempt failed, when it did.
    pub error: Option<String>,
    /// The person who resolved the effect in doubt (mark done or allow retry), if anyone.
    pub resolved_by: Option<String>,
    #[serde(default, with = "crate::model::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<i64>,
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

impl Effect {
    /// How another caller sees this effect while it runs: [`Error::EffectInDoubt`].
    pub fn in_doubt(&self) -> Error {
        Error::EffectInDoubt {
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            attempt: self.attempt,
            started_at: self.started_at,
            started_by: self.started_by.clone(),
        }
    }
}

/// What a begin tells the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Begin {
    /// Run the function now, then finish (or abort) with this token.
    Run { token: String, attempt: u32 },
    /// The effect already happened: this is its recorded result. Do not run the function.
    Done {
        #[schema(value_type = Value)]
        result: Value,
        #[serde(with = "crate::model::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        finished_at: i64,
    },
}

/// How a person resolves an effect in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolveAction {
    /// The effect happened: record it as done (with `result`, `null` by default); every
    /// later call returns that result.
    MarkDone,
    /// The effect did not happen (or may safely happen again): the next call runs it.
    AllowRetry,
}

/// A resolution of an effect in doubt.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    pub action: ResolveAction,
    /// For `mark_done`: the result later calls get (default `null`).
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub result: Option<Value>,
    /// The attempt the person looked at (compare-and-set: refused when another attempt is in
    /// doubt by now). Any attempt when absent.
    #[serde(default)]
    pub attempt: Option<u32>,
    /// Why (recorded in the audit trail).
    #[serde(default)]
    pub note: Option<String>,
    /// Who resolves (a signed-in user always resolves as themselves).
    #[serde(default)]
    pub by: Option<String>,
}

/// Filters for listing effects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectFilter {
    /// Only this namespace (an API key's own is implied).
    pub namespace: Option<String>,
    /// `in_doubt` (= `running`), `done`, `failed` or `retry_allowed`; every state when absent.
    pub state: Option<String>,
    /// At most this many (1..=1000, default 100), oldest first.
    pub limit: Option<u32>,
}

/// One row of an effect's append-only, hash-chained audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EffectEvent {
    pub effect_id: Uuid,
    pub seq: i64,
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub actor: Option<String>,
    /// `started`, `done`, `failed`, `marked_done`, `retry_allowed`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Verifies an effect's audit chain (the same hashing as a task's, with the effect's id).
pub fn verify_chain(events: &[EffectEvent]) -> ChainCheck {
    let rows: Vec<AuditEvent> = events
        .iter()
        .map(|e| AuditEvent {
            task_id: e.effect_id,
            seq: e.seq,
            at: e.at,
            actor: e.actor.clone(),
            channel: None,
            kind: e.kind.clone(),
            data: e.data.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        })
        .collect();
    crate::audit::verify_chain(&rows)
}

/// An audit row to append to an effect's chain.
#[derive(Debug, Clone)]
pub struct EffectAudit {
    pub actor: Option<String>,
    pub kind: &'static str,
    pub data: Value,
}

/// What to do to a locked effect row: write `next` (insert or update) and append `audit`.
#[derive(Debug, Clone, Default)]
pub struct Step {
    pub next: Option<Effect>,
    pub audit: Vec<EffectAudit>,
}

/// A stored audit row with its chain fields, ready to insert.
pub(crate) struct ChainedRow {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub row: EffectAudit,
}

/// Chains `rows` after `(seq, head)` for effect `id` at `at`; returns them and the new head.
pub(crate) fn chain(
    id: Uuid,
    at: i64,
    (mut seq, mut prev): (i64, String),
    rows: Vec<EffectAudit>,
) -> (Vec<ChainedRow>, (i64, String)) {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        seq += 1;
        let hash = row_hash(
            &prev,
            id,
            seq,
            at,
            row.actor.as_deref(),
            None,
            row.kind,
            &row.data,
        );
        out.push(ChainedRow {
            seq,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
            row,
        });
    }
    (out, (seq, prev))
}

/// The head of a new effect's chain.
pub(crate) fn genesis() -> (i64, String) {
    (0, GENESIS.to_string())
}

// ---------------------------------------------------------------------------------------
// The rules: pure functions of the locked row (`None`: no row yet).

fn missing(ns: &str, key: &str) -> Error {
    Error::Missing(format!("effect {key:?} in namespace {ns:?}"))
}

fn conflict(e: &Effect, reason: impl Into<String>) -> Error {
    Error::EffectConflict {
        namespace: e.namespace.clone(),
        key: e.key.clone(),
        state: e.state.as_str().to_string(),
        reason: reason.into(),
    }
}

fn result_digest(v: &Value) -> String {
    sha256_hex(&canonical_json(v))
}

/// A begin: the first caller (or the first after a failure or an allowed retry) runs; a done
/// effect returns its result; a running one is in doubt, unless `token` is the running
/// attempt's own (a retried begin whose answer was lost: it runs).
pub(crate) fn begin(
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
pub(crate) fn finish(
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
            let audit = EffectAudit {
                actor: e.started_by.clone(),
                kind: kind::DONE,
                data: json!({ "attempt": e.attempt, "result_sha256": result_digest(result) }),
            };
            let step = Step {
                next: Some(next),
                audit: vec![audit],
            };
            (step, Ok(()))
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

/// Why a token no longer holds the effect.
fn lost(e: &Effect, what: &str) -> Error {
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
pub(crate) fn abort(
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
            let audit = EffectAudit {
                actor: e.started_by.clone(),
                kind: kind::FAILED,
                data: json!({ "attempt": e.attempt, "error": error }),
            };
            let step = Step {
                next: Some(next),
                audit: vec![audit],
            };
            (step, Ok(()))
        }
        EffectState::Failed if mine => (Step::default(), Ok(())),
        _ => (Step::default(), Err(lost(e, "be released"))),
    }
}

/// A person's resolution of an effect in doubt (`running`), for the attempt they looked at.
pub(crate) fn resolve(
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

// ---------------------------------------------------------------------------------------
// Who may act, and input checks.

/// Begin, finish, abort and reads: trusted callers, admins (reads only) and API keys of the
/// effect's namespace.
fn check_agent(ns: &str, who: &Principal, write: bool) -> Result<()> {
    match who {
        Principal::Trusted => Ok(()),
        Principal::ApiKey(k) if k.namespace == ns => Ok(()),
        Principal::ApiKey(k) => Err(Error::Forbidden(format!(
            "this API key is for namespace {:?}, not {ns:?}",
            k.namespace
        ))),
        Principal::User(u) if u.role == Role::Admin && !write => Ok(()),
        Principal::User(u) => Err(Error::Forbidden(format!(
            "effects are for agents and admins ({} is a {})",
            u.name, u.role
        ))),
    }
}

/// Resolving an effect in doubt is a person's decision: trusted callers, admins, and API keys
/// of the namespace that may act for people (`--allow-answer`).
fn check_resolver(ns: &str, who: &Principal) -> Result<()> {
    match who {
        Principal::Trusted => Ok(()),
        Principal::User(u) if u.role == Role::Admin => Ok(()),
        Principal::User(u) => Err(Error::Forbidden(format!(
            "only an admin may resolve an effect in doubt ({} is a {})",
            u.name, u.role
        ))),
        Principal::ApiKey(k) if k.namespace != ns => Err(Error::Forbidden(format!(
            "this API key is for namespace {:?}, not {ns:?}",
            k.namespace
        ))),
        Principal::ApiKey(k) if !k.allow_answer => Err(Error::Forbidden(format!(
            "API key {} ({}) may not resolve effects in doubt: that is a person's decision \
             (an admin can create a key with --allow-answer)",
            k.id, k.name
        ))),
        Principal::ApiKey(_) => Ok(()),
    }
}

fn check_key(ns: &str, key: &str) -> Result<()> {
    check_namespace(ns)?;
    check_text("key", key, schema::MAX_KEY_BYTES)
}

fn check_token(token: &str) -> Result<()> {
    if !(8..=256).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidArgument(
            "an effect token is 8..=256 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

fn check_result(result: &Value) -> Result<()> {
    schema::check_size("result", result, schema::MAX_DOCUMENT_BYTES)
}

/// An error message as recorded: control characters (but newlines and tabs) become spaces,
/// and at most 2000 characters are kept. An abort never fails on its message: refusing it
/// would leave the effect in doubt for no reason.
fn clean_error(error: Option<&str>) -> String {
    let text = error.map(str::trim).filter(|e| !e.is_empty());
    let text = text.unwrap_or("the function raised an error");
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .take(2000)
        .collect()
}

fn check_by(by: &str) -> Result<()> {
    if by.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "who acts (`by`) must be given".into(),
        ));
    }
    check_text("by", by, schema::MAX_ACTOR_BYTES)
}

// ---------------------------------------------------------------------------------------
// The engine's operations.

impl Engine {
    /// Begins the effect `(namespace, key)` for an attempt holding `token` (random; generated
    /// when `None`), begun by `by` (who or which process). Returns [`Begin::Run`] (run the
    /// function, then [`Engine::effect_finish`] or [`Engine::effect_abort`]) or
    /// [`Begin::Done`] (the recorded result: do not run it); [`Error::EffectInDoubt`] when
    /// another attempt began and never recorded an outcome. A repeat with the running
    /// attempt's own token is [`Begin::Run`] again (a retried request).
    ///
    /// ```no_run
    /// # async fn demo(engine: inloop_core::Engine) -> inloop_core::Result<()> {
    /// use inloop_core::access::Principal;
    /// use inloop_core::effects::Begin;
    /// use serde_json::json;
    /// let who = Principal::Trusted;
    /// match engine.effect_begin("default", "charge-A-1", None, Some("worker-1"), &who).await? {
    ///     Begin::Run { token, .. } => {
    ///         let receipt = json!({"charge": "ch_1"}); // ... do it ...
    ///         engine.effect_finish("default", "charge-A-1", &token, receipt, &who).await?;
    ///     }
    ///     Begin::Done { result, .. } => println!("already done: {result}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn effect_begin(
        &self,
        namespace: &str,
        key: &str,
        token: Option<&str>,
        by: Option<&str>,
        who: &Principal,
    ) -> Result<Begin> {
        check_key(namespace, key)?;
        check_agent(namespace, who, true)?;
        let token = match token {
            Some(t) => {
                check_token(t)?;
                t.to_string()
            }
            None => crate::users::random_token(),
        };
        let by = by.map(str::trim).filter(|b| !b.is_empty());
        if let Some(b) = by {
            check_text("by", b, schema::MAX_ACTOR_BYTES)?;
        }
        // `done` is final: a replay needs no write lock.
        if let Some(e) = self.store().effect(namespace, key).await?
            && e.state == EffectState::Done
        {
            return begin(Some(&e), (namespace, key), &token, by, now_ms()).1;
        }
        let now = now_ms();
        let (_, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                begin(cur, (namespace, key), &token, by, now)
            })
            .await?;
        out
    }

    /// Records the result of the attempt holding `token`: the effect is `done` and every later
    /// begin returns `result`. [`Error::EffectConflict`] when the token no longer holds it
    /// (a person resolved it meanwhile); `too_large` over 256 KiB of canonical JSON.
    pub async fn effect_finish(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        result: Value,
        who: &Principal,
    ) -> Result<Effect> {
        check_key(namespace, key)?;
        check_agent(namespace, who, true)?;
        check_token(token)?;
        check_result(&result)?;
        let now = now_ms();
        let (after, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                finish(cur, (namespace, key), token, &result, now)
            })
            .await?;
        out?;
        after.ok_or_else(|| missing(namespace, key))
    }

    /// Releases the attempt holding `token` after its function raised: the effect is
    /// `failed` (with `error`), and the next begin runs it again.
    pub async fn effect_abort(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        error: Option<&str>,
        who: &Principal,
    ) -> Result<Effect> {
        check_key(namespace, key)?;
        check_agent(namespace, who, true)?;
        check_token(token)?;
        let error = clean_error(error);
        let now = now_ms();
        let (after, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                abort(cur, (namespace, key), token, &error, now)
            })
            .await?;
        out?;
        after.ok_or_else(|| missing(namespace, key))
    }

    /// Resolves an effect in doubt (`running`), as a person: [`ResolveAction::MarkDone`]
    /// records it done with `r.result` (later calls return it; the attempt that was in doubt
    /// can no longer record anything), [`ResolveAction::AllowRetry`] lets the next call run
    /// it again. With `r.attempt`, only that attempt is resolved ([`Error::EffectConflict`]
    /// otherwise). Trusted callers, admins, and API keys of the namespace with
    /// `--allow-answer`; audited with who, when and what.
    pub async fn effect_resolve(
        &self,
        namespace: &str,
        key: &str,
        mut r: Resolve,
        who: &Principal,
    ) -> Result<Effect> {
        check_key(namespace, key)?;
        check_resolver(namespace, who)?;
        let by = match who {
            Principal::User(u) => u.name.clone(),
            _ => r.by.clone().unwrap_or_default(),
        };
        check_by(&by)?;
        if let Some(n) = r.note.as_deref() {
            check_text("note", n, schema::MAX_TITLE_BYTES)?;
        }
        r.note = r.note.filter(|n| !n.trim().is_empty());
        match (r.action, &r.result) {
            (ResolveAction::MarkDone, Some(v)) => check_result(v)?,
            (ResolveAction::AllowRetry, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "a result is given only to mark an effect done".into(),
                ));
            }
            _ => {}
        }
        let now = now_ms();
        let (after, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                resolve(cur, (namespace, key), &r, &by, now)
            })
            .await?;
        out?;
        after.ok_or_else(|| missing(namespace, key))
    }

    /// The effect `(namespace, key)`.
    pub async fn effect(&self, namespace: &str, key: &str, who: &Principal) -> Result<Effect> {
        check_key(namespace, key)?;
        check_agent(namespace, who, false)?;
        self.store()
            .effect(namespace, key)
            .await?
            .ok_or_else(|| missing(namespace, key))
    }

    /// Effects matching `filter`, oldest first (an API key sees its namespace only).
    pub async fn effects(&self, filter: EffectFilter, who: &Principal) -> Result<Vec<Effect>> {
        let namespace = match (who, filter.namespace) {
            (Principal::ApiKey(k), Some(ns)) if ns != k.namespace => {
                return Err(Error::Forbidden(format!(
                    "this API key is for namespace {:?}, not {ns:?}",
                    k.namespace
                )));
            }
            (Principal::ApiKey(k), _) => Some(k.namespace.clone()),
            (_, ns) => ns,
        };
        if let Some(ns) = &namespace {
            check_namespace(ns)?;
            check_agent(ns, who, false)?;
        } else {
            check_agent("", who, false)?;
        }
        let state = match filter.state.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<EffectState>()?),
            None => None,
        };
        let limit = filter.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "limit must be 1..=1000, not {limit}"
            )));
        }
        self.store()
            .effects(namespace.as_deref(), state, i64::from(limit))
            .await
    }

    /// Effects in doubt (`running`), oldest first: what a person must look at.
    pub async fn effects_in_doubt(
        &self,
        namespace: Option<&str>,
        who: &Principal,
    ) -> Result<Vec<Effect>> {
        let filter = EffectFilter {
            namespace: namespace.map(str::to_string),
            state: Some("in_doubt".into()),
            limit: Some(1000),
        };
        self.effects(filter, who).await
    }

    /// How many effects are in doubt, all namespaces (one query; for metrics).
    pub async fn effects_in_doubt_count(&self) -> Result<u64> {
        Ok(self.store().effects_in_doubt_count().await?.max(0) as u64)
    }

    /// The effect's audit trail, oldest first.
    pub async fn effect_audit(
        &self,
        namespace: &str,
        key: &str,
        who: &Principal,
    ) -> Result<Vec<EffectEvent>> {
        let e = self.effect(namespace, key, who).await?;
        self.store().effect_audit(&e.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NK: (&str, &str) = ("default", "charge-1");

    fn run(cur: Option<&Effect>, token: &str) -> (Option<Effect>, Result<Begin>) {
        let (step, out) = begin(cur, NK, token, Some("p1"), 1000);
        (step.next.or_else(|| cur.cloned()), out)
    }

    #[test]
    fn the_life_of_an_effect() {
        let (e, out) = run(None, "tok-aaaaaaaa");
        let e = e.unwrap();
        assert!(matches!(out, Ok(Begin::Run { attempt: 1, .. })));
        assert_eq!(e.state, EffectState::Running);
        // the same attempt again (a retried request): run, nothing written
        let (step, out) = begin(Some(&e), NK, "tok-aaaaaaaa", None, 1001);
        assert!(step.next.is_none() && matches!(out, Ok(Begin::Run { attempt: 1, .. })));
        // another attempt: in doubt
        let (step, out) = begin(Some(&e), NK, "tok-bbbbbbbb", None, 1001);
        assert!(step.next.is_none());
        assert_eq!(out.unwrap_err().code(), "effect_in_doubt");
        // a stranger cannot finish it
        let (_, out) = finish(Some(&e), NK, "tok-bbbbbbbb", &json!(1), 1002);
        assert_eq!(out.unwrap_err().code(), "conflict");
        // its own attempt can, once; a repeat with the same result is fine
        let (step, out) = finish(Some(&e), NK, "tok-aaaaaaaa", &json!({"x": 1}), 1002);
        out.unwrap();
        let done = step.next.unwrap();
        assert_eq!(done.state, EffectState::Done);
        let (step, out) = finish(Some(&done), NK, "tok-aaaaaaaa", &json!({"x": 1}), 1003);
        assert!(step.next.is_none() && out.is_ok());
        let (_, out) = finish(Some(&done), NK, "tok-aaaaaaaa", &json!({"x": 2}), 1003);
        assert_eq!(out.unwrap_err().code(), "conflict");
        // later begins get the result
        let (_, out) = run(Some(&done), "tok-cccccccc");
        assert_eq!(
            out.unwrap(),
            Begin::Done {
                result: json!({"x": 1}),
                finished_at: 1002
            }
        );
    }

    #[test]
    fn a_failure_releases_and_resolutions_need_the_attempt_in_doubt() {
        let (e, _) = run(None, "tok-aaaaaaaa");
        let e = e.unwrap();
        let (step, out) = abort(Some(&e), NK, "tok-aaaaaaaa", "boom", 1001);
        out.unwrap();
        let failed = step.next.unwrap();
        assert_eq!(failed.state, EffectState::Failed);
        let (e2, out) = run(Some(&failed), "tok-bbbbbbbb");
        assert!(matches!(out, Ok(Begin::Run { attempt: 2, .. })));
        let e2 = e2.unwrap();
        let mark = |attempt| Resolve {
            action: ResolveAction::MarkDone,
            result: Some(json!("ok")),
            attempt,
            note: None,
            by: None,
        };
        let (_, out) = resolve(Some(&e2), NK, &mark(Some(1)), "alice", 1002);
        assert_eq!(out.unwrap_err().code(), "conflict");
        let (step, out) = resolve(Some(&e2), NK, &mark(Some(2)), "alice", 1002);
        out.unwrap();
        let done = step.next.unwrap();
        assert_eq!(
            (done.state, done.resolved_by.as_deref()),
            (EffectState::Done, Some("alice"))
        );
        // the attempt that was in doubt can no longer record anything
        let (_, out) = finish(Some(&done), NK, "tok-bbbbbbbb", &json!(1), 1003);
        let err = out.unwrap_err();
        assert!(err.to_string().contains("alice"), "{err}");
        // nor can a done effect be resolved again
        let (_, out) = resolve(Some(&done), NK, &mark(None), "bob", 1003);
        assert_eq!(out.unwrap_err().code(), "conflict");
    }

    #[test]
    fn errors_are_cleaned_not_refused() {
        assert_eq!(clean_error(None), "the function raised an error");
        assert_eq!(clean_error(Some("a\rb\u{0}c\nd")), "a b c\nd");
        assert_eq!(clean_error(Some(&"x".repeat(5000))).chars().count(), 2000);
    }

    #[test]
    fn states_parse_with_in_doubt_as_running() {
        assert_eq!(
            "in_doubt".parse::<EffectState>().unwrap(),
            EffectState::Running
        );
        assert!("nope".parse::<EffectState>().is_err());
    }
}
