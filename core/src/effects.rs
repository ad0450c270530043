//! Exactly-once effects: what `once(key, fn)` in the SDKs stands on (`docs/policies.md`).
//!
//! An effect is a row keyed by `(namespace, key)`. Before the SDK runs `fn` it *begins* the
//! effect: the first caller gets [`Begin::Run`] with a random attempt token and the row becomes
//! `running`; after `fn` returns, the SDK *finishes* it with the result (`done`), or, when `fn`
//! raised, *aborts* it (`failed`: released, so a later call runs `fn` again). A caller that
//! finds the effect `done` gets the recorded result ([`Begin::Done`]) and never runs `fn`. A
//! caller that finds it `running` under another attempt gets [`Error::EffectInDoubt`]: nobody
//! can tell a process that died inside `fn` from one still running it, so the effect is never
//! re-run silently. A person resolves it ([`Engine::effect_resolve`](crate::Engine::effect_resolve)): mark it done (with a
//! result) or allow a retry. Every step is a compare-and-set on the locked row (the rules
//! below are pure functions of the row, applied by [`crate::store::Store::effect_transition`])
//! and is written to the effect's append-only, hash-chained audit trail.
//!
//! There is deliberately no lease: a lease that expires cannot tell a dead process from a
//! paused or partitioned one, and re-running on expiry would be the silent double effect this
//! exists to prevent.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::audit::{ChainCheck, GENESIS, row_hash};
use crate::error::{Error, Result};
use crate::model::AuditEvent;

mod checks;
mod operations;
mod transitions;

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

#[cfg(test)]
mod tests;
