//! Channels: where a task is shown besides the dashboard (webhooks, e-mail), and the outbox
//! dispatcher that delivers to them.
//!
//! A task's `notify` entries (`"webhook:billing"`, `"email:ops@acme.com"`) become outbox rows in
//! the transaction that creates it; the transaction that ends it adds an `ended` row for each
//! channel that updates what it showed ([`updates_on_end`]). Dispatchers ([`spawn_dispatcher`],
//! started by `inloop serve`; any number of replicas) lease due rows, deliver them with the
//! row's idempotency key, and settle them: done (a `delivered` audit row), retried with
//! exponential backoff, or given up after the retry horizon (a `delivery_failed` audit row).
//! A dispatcher that dies loses its lease; another one redelivers with the same key.
//!
//! A task's `callback_url` rides the same outbox ([`callback`]): its end is one more `ended`
//! row (channel `callback`, target the URL), POSTed only if this server's allow-list permits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::config::{CallbacksConfig, ChannelsConfig, FileConfig};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Task, now_ms};
use crate::store::outbox::{self, Claimed, Finish};
use crate::telemetry::{self, TaskSpan};
use opentelemetry::KeyValue;

pub mod callback;
pub mod email;
pub mod sign;
pub mod slack;
pub mod slack_modal;
pub mod webhook;

/// Whether a channel kind changes what it showed when the task ends (so the end is enqueued
/// for it): webhooks get a `task.ended` event. E-mail cannot unsend; its link page tells the
/// state instead.
pub fn updates_on_end(kind: &str) -> bool {
    matches!(kind, "webhook" | "slack")
}

/// Why a delivery attempt failed.
#[derive(Debug, Clone)]
pub struct DeliveryError {
    pub message: String,
    /// No retry can help (an unknown target, a refused address): give up at once.
    pub permanent: bool,
}

impl DeliveryError {
    /// A failure worth retrying (network, 5xx, timeouts).
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// One delivery to perform.
#[derive(Debug)]
pub struct Job<'a> {
    pub task: &'a Task,
    /// What follows `channel:` in the notify entry.
    pub target: &'a str,
    /// `created` or `ended`.
    pub event: &'a str,
    /// Sent with every attempt of this delivery; receivers deduplicate on it.
    pub idem_key: &'a str,
    pub attempt: i64,
    /// What the `created` delivery to the same target returned (for updates).
    pub shown: Option<&'a Value>,
}

/// A delivery channel.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    /// Performs one attempt; returns what to remember about it (e.g. a message id).
    async fn deliver(&self, job: &Job<'_>) -> std::result::Result<Option<Value>, DeliveryError>;

    /// Checks that the configuration can work (reachability where it can be tested without
    /// sending anything); returns one line per checked item.
    async fn check(&self) -> Result<Vec<String>>;
}

/// How the outbox is worked.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// How often an idle dispatcher looks for due rows.
    pub poll: Duration,
    /// How long a claimed row is reserved; a dispatcher that dies loses it after this.
    pub lease: Duration,
    /// Rows claimed at once.
    pub batch: i64,
    /// First retry delay; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Give up (`delivery_failed`) when a row is this old and still failing.
    pub horizon: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            poll: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            batch: 16,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            horizon: Duration::from_secs(24 * 3600),
        }
    }
}

/// The configured channels of a server, checked: build with [`Settings::resolve`], then
/// [`Channels::new`].
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub dispatch: DispatchOptions,
    pub webhooks: BTreeMap<String, webhook::Endpoint>,
    pub email: Option<email::EmailSettings>,
    pub slack: Option<slack::SlackSettings>,
    /// Completion callbacks (`[callbacks]`); `None`: off, every callback is refused.
    pub callbacks: Option<callback::CallbackSettings>,
}

impl Settings {
    /// Reads the `[channels]` table and the `INLOOP_*` variables in `env` (which win), checks
    /// everything: a bad URL, a weak secret or half a configuration is an [`Error::Config`]
    /// naming the key. `public_url` is where e-mail links point.
    /// Callbacks come from the `INLOOP_CALLBACK_*` variables only here (see
    /// [`Settings::resolve_with_callbacks`] for the `[callbacks]` table).
    pub fn resolve(
        file: Option<&ChannelsConfig>,
        env: &BTreeMap<String, String>,
        public_url: Option<&str>,
    ) -> Result<Settings> {
        Self::resolve_with_callbacks(file, None, env, public_url)
    }

    /// [`Settings::resolve`] plus the `[callbacks]` table (merged with `INLOOP_CALLBACK_ALLOW`
    /// and `INLOOP_CALLBACK_SECRET`, which win).
    pub fn resolve_with_callbacks(
        file: Option<&ChannelsConfig>,
        callbacks: Option<&CallbacksConfig>,
        env: &BTreeMap<String, String>,
        public_url: Option<&str>,
    ) -> Result<Settings> {
        let file = file.cloned().unwrap_or_default();
        let env_var = |k: &str| {
            env.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |key: &str, from_file: Option<u64>| -> Result<Option<u64>> {
            match env_var(key) {
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| Error::Config(format!("{key} must be a whole number, not {v:?}"))),
                None => Ok(from_file),
            }
        };
        let mut dispatch = DispatchOptions::default();
        if let Some(v) = num("INLOOP_CHANNEL_RETRY_HORIZON_SECS", file.retry_horizon_secs)? {
            dispatch.horizon = Duration::from_secs(v);
        }
        if let Some(v) = num("INLOOP_CHANNEL_RETRY_BASE_MS", file.retry_base_ms)? {
            dispatch.retry_base = Duration::from_millis(v.max(1));
        }
        if let Some(v) = num("INLOOP_CHANNEL_RETRY_MAX_SECS", file.retry_max_secs)? {
            dispatch.retry_max = Duration::from_secs(v.max(1));
        }
        if let Some(v) = num("INLOOP_CHANNEL_LEASE_SECS", file.lease_secs)? {
            if v < 1 {
                return Err(Error::Config(
                    "channels lease_secs must be at least 1".into(),
                ));
            }
            dispatch.lease = Duration::from_secs(v);
        }
        if let Some(v) = num("INLOOP_CHANNEL_POLL_MS", file.poll_ms)? {
            dispatch.poll = Duration::from_millis(v.clamp(10, 60_000));
        }
        let webhooks = webhook::resolve(&file.webhooks, env)?;
        let email = email::resolve(file.email.as_ref(), env, public_url)?;
        let slack = slack::resolve(file.slack.as_ref(), env, public_url)?;
        let callbacks = callback::resolve(callbacks, env)?;
        Ok(Settings {
            dispatch,
            webhooks,
            email,
            slack,
            callbacks,
        })
    }

    /// [`Settings::resolve`] with the process environment.
    pub fn from_env(file: Option<&ChannelsConfig>, public_url: Option<&str>) -> Result<Settings> {
        Self::resolve(file, &std::env::vars().collect(), public_url)
    }

    /// The `[channels]` and `[callbacks]` tables of a configuration file, with the process
    /// environment (what `inloop serve` and `inloop channels check` use).
    pub fn from_config(file: &FileConfig, public_url: Option<&str>) -> Result<Settings> {
        Self::resolve_with_callbacks(
            file.channels.as_ref(),
            file.callbacks.as_ref(),
            &std::env::vars().collect(),
            public_url,
        )
    }

    /// Names of what is configured (`webhook:billing`, `email`), for logs and `channels check`.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .webhooks
            .keys()
            .map(|n| format!("webhook:{n}"))
            .collect();
        if let Some(c) = &self.callbacks {
            out.push(format!(
                "callbacks ({} allowed prefix{})",
                c.allow.entries().len(),
                if c.allow.entries().len() == 1 {
                    ""
                } else {
                    "es"
                }
            ));
        }
        out
    }
}

/// The live channels of a server.
#[derive(Debug)]
pub struct Channels {
    pub dispatch: DispatchOptions,
    webhook: webhook::Webhooks,
    email: Option<email::Email>,
    slack: Option<slack::Slack>,
    callback: Option<callback::Callbacks>,
}

impl Channels {
    /// Builds the channels (HTTP clients, the SMTP transport) from checked settings.
    pub fn new(settings: Settings) -> Result<Channels> {
        Ok(Channels {
            dispatch: settings.dispatch,
            webhook: webhook::Webhooks::new(settings.webhooks)?,
            email: settings.email.map(email::Email::new).transpose()?,
            slack: settings.slack.map(slack::Slack::new).transpose()?,
            callback: settings
                .callbacks
                .map(callback::Callbacks::new)
                .transpose()?,
        })
    }

    /// The callback URLs this server delivers to (empty when callbacks are off): what its
    /// REST API checks at creation ([`crate::Engine::with_callback_allow`]).
    pub fn callback_allow(&self) -> callback::AllowList {
        self.callback
            .as_ref()
            .map(|c| c.allow().clone())
            .unwrap_or_default()
    }

    /// The channel for a notify kind, or why there is none.
    fn get(&self, kind: &str) -> std::result::Result<&dyn Channel, DeliveryError> {
        match kind {
            "webhook" => Ok(&self.webhook),
            "email" => match &self.email {
                Some(e) => Ok(e),
                None => Err(DeliveryError::permanent(
                    "the email channel is not configured on this server (INLOOP_SMTP_URL)",
                )),
            },
            "slack" => match &self.slack {
                Some(s) => Ok(s),
                None => Err(DeliveryError::permanent(
                    "the slack channel is not configured on this server (INLOOP_SLACK_BOT_TOKEN)",
                )),
            },
            outbox::CALLBACK => match &self.callback {
                Some(c) => Ok(c),
                None => Err(DeliveryError::permanent(format!(
                    "callbacks are not configured on this server ([callbacks] allow and secret, \
                     or {} and {}); nothing was sent",
                    callback::ALLOW_ENV,
                    callback::SECRET_ENV
                ))),
            },
            other => Err(DeliveryError::permanent(format!(
                "no channel {other:?} on this server (known: webhook, email, slack)"
            ))),
        }
    }

    /// The e-mail channel, when configured (the link endpoints need its keys).
    pub fn email(&self) -> Option<&email::Email> {
        self.email.as_ref()
    }

    /// The Slack channel, when configured (the interactivity endpoint needs it).
    pub fn slack(&self) -> Option<&slack::Slack> {
        self.slack.as_ref()
    }

    /// Checks every configured channel; one line per item, or the first error.
    pub async fn check(&self) -> Result<Vec<String>> {
        let mut out = self.webhook.check().await?;
        if let Some(e) = &self.email {
            out.extend(e.check().await?);
        }
        if let Some(s) = &self.slack {
            out.extend(s.check().await?);
        }
        if let Some(c) = &self.callback {
            out.extend(c.check().await?);
        }
        Ok(out)
    }
}

/// Claims one batch of due deliveries as `worker`, delivers them concurrently and settles
/// them; returns how many rows were claimed. [`spawn_dispatcher`] calls this in a loop.
pub async fn dispatch_once(engine: &Engine, channels: &Channels, worker: &str) -> Result<usize> {
    let opts = &channels.dispatch;
    let owner = format!("{worker}/{}", Uuid::now_v7().simple());
    let lease_ms = opts.lease.as_millis() as i64;
    let claimed = engine
        .store()
        .claim_deliveries(&owner, now_ms(), lease_ms, opts.batch)
        .await?;
    let n = claimed.len();
    let runs = claimed.into_iter().map(|c| async move {
        let started = now_ms();
        let span = TaskSpan::start(telemetry::DELIVER);
        let mut read = None;
        let finish = attempt(engine, channels, &c, &mut read).await;
        if let Some(task) = read {
            trace_delivery(span, &task, &c, &finish);
        }
        if let Err(e) = engine
            .store()
            .finish_delivery(&c, worker, started, now_ms(), &finish)
            .await
        {
            tracing::warn!(error = %e, delivery = c.id, "inloop: cannot settle a delivery; its lease will expire and it is retried");
        }
    });
    futures_util::future::join_all(runs).await;
    Ok(n)
}

/// Ends the `inloop.deliver` span of one attempt: the channel, event, attempt and outcome.
fn trace_delivery(span: TaskSpan, task: &Task, c: &Claimed, finish: &Finish) {
    let (outcome, error) = match finish {
        Finish::Done { .. } => ("done", None),
        Finish::Skipped { .. } => ("skipped", None),
        Finish::Retry { error, .. } => ("retry", Some(error.clone())),
        Finish::Failed { error } => ("failed", Some(error.clone())),
    };
    let attrs = vec![
        KeyValue::new("inloop.delivery.channel", c.channel.clone()),
        KeyValue::new("inloop.delivery.event", c.event.clone()),
        KeyValue::new("inloop.delivery.attempt", c.attempt),
        KeyValue::new("inloop.delivery.outcome", outcome),
    ];
    match error {
        Some(message) => span.end_error(task, attrs, "delivery_failed", message),
        None => span.end(task, attrs),
    }
}

/// One attempt of `c`, turned into how to settle it. The task as read goes to `read` when
/// tracing is on (its span's parent and attributes).
async fn attempt(
    engine: &Engine,
    channels: &Channels,
    c: &Claimed,
    read: &mut Option<Task>,
) -> Finish {
    let opts = &channels.dispatch;
    let outcome = async {
        let task = engine
            .get(c.task_id)
            .await
            .map_err(|e| DeliveryError::transient(format!("cannot read the task: {e}")))?;
        if telemetry::enabled() {
            *read = Some(task.clone());
        }
        let channel = channels.get(&c.channel)?;
        let shown = if c.event == outbox::ENDED || outbox::is_reminder(&c.event) {
            let rows =
                engine.store().deliveries(&c.task_id).await.map_err(|e| {
                    DeliveryError::transient(format!("cannot read deliveries: {e}"))
                })?;
            let created = rows.into_iter().find(|d| {
                d.event == outbox::CREATED && d.channel == c.channel && d.target == c.target
            });
            match created {
                Some(d) if d.state == "done" => d.result,
                // A reminder of a task that was never shown there shows it (as new).
                _ if c.event != outbox::ENDED => None,
                Some(d) => {
                    return Ok(Err(format!(
                        "the task was never shown on {}:{} (its delivery {})",
                        c.channel, c.target, d.state
                    )));
                }
                None => None,
            }
        } else {
            None
        };
        let job = Job {
            task: &task,
            target: &c.target,
            event: &c.event,
            idem_key: &c.idem_key,
            attempt: c.attempt,
            shown: shown.as_ref(),
        };
        // Never outlive the lease: past it, another dispatcher may start the same delivery.
        let limit = opts.lease.mul_f64(0.8);
        match tokio::time::timeout(limit, channel.deliver(&job)).await {
            Ok(r) => r.map(Ok),
            Err(_) => Err(DeliveryError::transient(format!(
                "no answer within {} ms",
                limit.as_millis()
            ))),
        }
    }
    .await;
    match outcome {
        Ok(Ok(result)) => Finish::Done { result },
        Ok(Err(reason)) => Finish::Skipped { reason },
        Err(e) => {
            let now = now_ms();
            let give_up_at = c.created_at + opts.horizon.as_millis() as i64;
            if e.permanent || now >= give_up_at {
                let why = if e.permanent {
                    e.message
                } else {
                    format!(
                        "gave up after {} attempts over {} s: {}",
                        c.attempt,
                        (now - c.created_at) / 1000,
                        e.message
                    )
                };
                Finish::Failed { error: why }
            } else {
                let delay = backoff(opts, c.attempt);
                Finish::Retry {
                    error: e.message,
                    next_at: (now + delay).min(give_up_at),
                }
            }
        }
    }
}

/// The delay before retry `attempt + 1`: `retry_base * 2^(attempt-1)`, capped at
/// `retry_max`, plus up to 10% jitter so that replicas do not retry in lockstep.
pub fn backoff(opts: &DispatchOptions, attempt: i64) -> i64 {
    let base = opts.retry_base.as_millis() as i64;
    let max = opts.retry_max.as_millis() as i64;
    let exp = (attempt - 1).clamp(0, 30) as u32;
    let d = base.saturating_mul(1_i64 << exp).min(max).max(1);
    d + rand::random_range(0..=d / 10)
}

/// Runs a dispatcher until the engine is dropped or the handle aborted: claims due rows every
/// `poll` (at once again after a full batch). Several dispatchers, in one process or many,
/// share the outbox safely.
pub fn spawn_dispatcher(
    engine: Engine,
    channels: Arc<Channels>,
    worker: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let n = match dispatch_once(&engine, &channels, &worker).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "inloop: outbox dispatch failed");
                    0
                }
            };
            if n < channels.dispatch.batch as usize {
                tokio::time::sleep(channels.dispatch.poll).await;
            }
        }
    })
}

/// A task's deliveries (every channel and event), oldest first.
pub async fn deliveries(engine: &Engine, task: Uuid) -> Result<Vec<outbox::Delivery>> {
    engine.store().deliveries(&task).await
}

/// Deliveries in `state` (`pending`, `done`, `failed`, `skipped`; all when `None`).
pub async fn deliveries_in(
    engine: &Engine,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<outbox::Delivery>> {
    engine.store().deliveries_in(state, limit).await
}

/// The attempts recorded for a delivery row.
pub async fn attempts(engine: &Engine, delivery: i64) -> Result<Vec<outbox::Attempt>> {
    engine.store().delivery_attempts(delivery).await
}
