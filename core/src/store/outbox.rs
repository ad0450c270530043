//! Rows of the channel outbox, as the store writes and reads them.
//!
//! A task's deliveries are written in the transaction that creates it (`created`, one per
//! `notify` entry) and in the one that ends it (`ended`, for channels that update what they
//! showed). Each row is keyed by `(task, channel, target, event)` and carries an idempotency
//! key derived from that tuple, so a replayed create or a second end never adds a row and a
//! redelivered row is recognisable by its receiver.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::model::Task;
use crate::schema::sha256_hex;

/// The two events a delivery announces.
pub const CREATED: &str = "created";
/// See [`CREATED`].
pub const ENDED: &str = "ended";

/// A delivery row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub channel: String,
    pub target: String,
    pub event: String,
    pub idem_key: String,
}

/// The event a reminder sends (`reminder.1`, `reminder.2` ...): the channels show the task
/// again, as when it was created.
pub fn reminder_event(index: u32) -> String {
    format!("reminder.{index}")
}

/// Whether `event` is a reminder's.
pub fn is_reminder(event: &str) -> bool {
    event.starts_with("reminder.")
}

/// The idempotency key of a delivery: stable for `(task, channel, target, event)`.
pub fn idem_key(task: &Uuid, channel: &str, target: &str, event: &str) -> String {
    let h = sha256_hex(&format!("{task}\n{channel}\n{target}\n{event}"));
    format!("dlv_{}", &h[..32])
}

/// The channel of a task's completion callback: its outbox rows are `(task, "callback",
/// callback_url, "ended")`.
pub const CALLBACK: &str = "callback";

/// The key of a row armed again for a later end of a reopened task (its first end used
/// [`idem_key`]): unique per end, since two ends of one task never share a time.
pub fn rearmed_key(task: &Uuid, d: &NewDelivery, ended_at: i64) -> String {
    idem_key(
        task,
        &d.channel,
        &d.target,
        &format!("{}@{ended_at}", d.event),
    )
}

/// The deliveries `event` causes for `task`: every `notify` entry when it is created; on its
/// end, the entries whose channel updates what it showed ([`crate::channels::updates_on_end`]),
/// and its `callback_url`.
pub fn deliveries(task: &Task, event: &str) -> Vec<NewDelivery> {
    deliveries_to(task, &task.notify, event)
}

/// The deliveries `event` causes for `task` on the `notify`-style `targets` (and, on its end,
/// its `callback_url`).
pub fn deliveries_to(task: &Task, targets: &[String], event: &str) -> Vec<NewDelivery> {
    let mut out: Vec<NewDelivery> = Vec::new();
    for entry in targets {
        let Some((channel, target)) = entry.split_once(':') else {
            continue; // the engine refuses such entries at creation
        };
        if channel == CALLBACK {
            continue; // refused at creation too: a callback is `callback_url`, never a notify entry
        }
        if event == ENDED && !crate::channels::updates_on_end(channel) {
            continue;
        }
        let d = NewDelivery {
            channel: channel.to_string(),
            target: target.to_string(),
            event: event.to_string(),
            idem_key: idem_key(&task.id, channel, target, event),
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if event == ENDED
        && let Some(url) = &task.callback_url
    {
        out.push(NewDelivery {
            channel: CALLBACK.to_string(),
            target: url.clone(),
            event: event.to_string(),
            idem_key: idem_key(&task.id, CALLBACK, url, event),
        });
    }
    out
}

/// A row a dispatcher leased: it may deliver it until `lease_until`, and only it may finish it
/// (its `lease_owner` is random per claim).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub task_id: Uuid,
    pub channel: String,
    pub target: String,
    pub event: String,
    pub idem_key: String,
    /// This attempt's number (1 for the first).
    pub attempt: i64,
    pub created_at: i64,
    pub lease_owner: String,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    /// Delivered; `result` is kept (e.g. the Slack message's channel and ts).
    Done { result: Option<Value> },
    /// Failed; try again at `next_at`.
    Retry { error: String, next_at: i64 },
    /// Failed for good (horizon passed, or an error no retry can fix): `delivery_failed`.
    Failed { error: String },
    /// Nothing to do (an update for a message that was never shown).
    Skipped { reason: String },
}

impl Finish {
    pub(crate) fn state(&self) -> &'static str {
        match self {
            Finish::Done { .. } => "done",
            Finish::Retry { .. } => "pending",
            Finish::Failed { .. } => "failed",
            Finish::Skipped { .. } => "skipped",
        }
    }

    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Finish::Done { .. } => "ok",
            Finish::Retry { .. } => "retry",
            Finish::Failed { .. } => "failed",
            Finish::Skipped { .. } => "skipped",
        }
    }

    pub(crate) fn error(&self) -> Option<&str> {
        match self {
            Finish::Done { .. } => None,
            Finish::Retry { error, .. } | Finish::Failed { error } => Some(error),
            Finish::Skipped { reason } => Some(reason),
        }
    }
}

/// A delivery row as it stands (for `inloop` commands, the dashboard and tests).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub task_id: Uuid,
    pub channel: String,
    pub target: String,
    pub event: String,
    pub idempotency_key: String,
    /// `pending`, `done`, `failed` or `skipped`.
    pub state: String,
    pub attempts: i64,
    #[serde(serialize_with = "crate::model::rfc3339::serialize")]
    pub next_at: i64,
    pub last_error: Option<String>,
    pub result: Option<Value>,
    #[serde(serialize_with = "crate::model::rfc3339::serialize")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::model::rfc3339_opt::serialize")]
    pub done_at: Option<i64>,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub attempt: i64,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: i64,
    /// `ok`, `retry`, `failed` or `skipped`.
    pub outcome: String,
    pub error: Option<String>,
}

/// The single-use record of an e-mail link, written with the answer it carried.
#[derive(Debug, Clone)]
pub struct LinkUse {
    pub link_id: String,
    pub recipient: String,
}
