//! Durable storage: SQLite (embedded default) and PostgreSQL.
//!
//! The store is deliberately dumb: it inserts, reads, and applies a [`Decision`] atomically
//! under a row lock. Every rule (what an answer may do to a task, when a task times out) is
//! decided by the engine in `rules.rs`, once, for both backends. Both backends share one SQL
//! body (`sql/`), instantiated per driver, so a query cannot drift between them.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{AuditEvent, Status, Task};

#[macro_use]
mod sql;
pub mod admission;
pub mod outbox;
pub mod postgres;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Fields a transition may change on a task.
#[derive(Debug, Clone)]
pub struct Update {
    pub status: Status,
    pub response: Option<Value>,
    pub answered_by: Option<String>,
    pub answered_via: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancel_reason: Option<String>,
    pub ended_at: Option<i64>,
}

/// An audit row to append (seq, time and hashes are filled in by the store).
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: Option<String>,
    pub channel: Option<String>,
    pub kind: &'static str,
    pub data: Value,
}

impl NewAudit {
    /// A row for what a person or caller (`actor`) did through `channel`.
    ///
    /// ```
    /// # use inloop_core::store::NewAudit;
    /// let row = NewAudit::by("ann", "dashboard", "claimed", serde_json::json!({}));
    /// assert_eq!(row.actor.as_deref(), Some("ann"));
    /// ```
    pub fn by(actor: &str, channel: &str, kind: &'static str, data: Value) -> NewAudit {
        NewAudit {
            actor: Some(actor.to_string()),
            channel: Some(channel.to_string()),
            kind,
            data,
        }
    }

    /// A row for what inloop did by itself (a timeout, a reminder): no actor, no channel.
    pub fn system(kind: &'static str, data: Value) -> NewAudit {
        NewAudit {
            actor: None,
            channel: None,
            kind,
            data,
        }
    }
}

/// The verification bookkeeping a transition sets on a task (all four fields at once).
#[derive(Debug, Clone, Default)]
pub struct VerifyState {
    pub attempts: u32,
    pub rejections: Vec<crate::verify::Rejection>,
    /// The lease of the answer now with the LLM verifier (`None`: none).
    pub token: Option<String>,
    pub until: Option<i64>,
}

/// What to do to a locked task: change it, append audit rows, both, or neither.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// New verification bookkeeping (attempts, rejections, lease).
    pub verify: Option<VerifyState>,
    pub update: Option<Update>,
    /// A change of claim: `Some(Some(who))` claims (at the transition's time), `Some(None)`
    /// releases.
    pub claim: Option<Option<String>>,
    pub audit: Vec<NewAudit>,
    /// The votes after this transition (a vote was recorded).
    pub votes: Option<Vec<crate::policy::Vote>>,
    /// The timers after this transition (some fired).
    pub timers: Option<Vec<crate::policy::Timer>>,
    /// New `assign_to` (an escalation added approvers).
    pub assign_to: Option<Vec<String>>,
    /// New `notify` (an escalation added targets).
    pub notify: Option<Vec<String>>,
    /// Outbox rows to insert with this transition (reminders, escalation).
    pub deliveries: Vec<outbox::NewDelivery>,
}

impl Decision {
    /// The task after this decision's column changes, stamped `updated_at = now`; `None` when
    /// it changes no column (audit rows and deliveries alone). Takes the changes out of
    /// `self`, leaving the audit rows and deliveries for the caller to write.
    pub(crate) fn apply(&mut self, before: &Task, now: i64) -> Option<Task> {
        let changed = self.update.is_some()
            || self.claim.is_some()
            || self.verify.is_some()
            || self.votes.is_some()
            || self.timers.is_some()
            || self.assign_to.is_some()
            || self.notify.is_some();
        if !changed {
            return None;
        }
        let mut after = before.clone();
        if let Some(v) = self.votes.take() {
            after.votes = v;
        }
        if let Some(t) = self.timers.take() {
            after.timers = t;
        }
        if let Some(a) = self.assign_to.take() {
            after.assign_to = a;
        }
        if let Some(n) = self.notify.take() {
            after.notify = n;
        }
        if let Some(v) = self.verify.take() {
            after.attempts = v.attempts;
            after.rejections = v.rejections;
            after.verify_token = v.token;
            after.verifying_until = v.until;
        }
        if let Some(u) = self.update.take() {
            after.status = u.status;
            after.response = u.response;
            after.answered_by = u.answered_by;
            after.answered_via = u.answered_via;
            after.cancelled_by = u.cancelled_by;
            after.cancel_reason = u.cancel_reason;
            after.ended_at = u.ended_at;
        }
        if let Some(claim) = self.claim.take() {
            after.claimed_at = claim.as_ref().map(|_| now);
            after.claimed_by = claim;
        }
        after.updated_at = now;
        Some(after)
    }
}

/// A listing query, already checked by the engine.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub namespace: Option<String>,
    pub status: Option<Status>,
    pub key_prefix: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Only ids below this one (the previous page's last id).
    pub before_id: Option<String>,
    pub limit: i64,
    /// Only what this reviewer may see (`None`: everything).
    pub viewer: Option<crate::access::Identity>,
    /// Only tasks whose `assign_to` has this entry (case-insensitive).
    pub assignee: Option<String>,
    /// Only tasks with at least one `failed` delivery.
    pub failed_deliveries: bool,
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long to wait for a connection (and, on SQLite, for the write lock).
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store on either backend. (One lives per engine, so the size difference between the
/// variants does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            // Every PostgreSQL call waits its turn (admission.rs): a burst queues, an outage fails.
            Store::Postgres($s) => $s.admission.run(async { $e }).await,
        }
    };
}

impl Store {
    /// Connects to `url` (`sqlite:PATH`, `postgres://...`). Does not migrate.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Store> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url, opts).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url, opts).await?))
        } else {
            Err(Error::Config(format!(
                "unsupported database URL {:?}: use sqlite:PATH or postgres://...",
                redact_url(url)
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations (safe to run concurrently from several processes).
    pub async fn migrate(&self) -> Result<()> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Inserts `task` unless its `(namespace, key)` exists; returns the stored task and whether
    /// it was inserted. The `created` audit row is written in the same transaction.
    pub async fn insert_or_get(&self, task: &Task, created: NewAudit) -> Result<(Task, bool)> {
        dispatch!(self, s => s.insert_or_get(task, created).await)
    }

    pub async fn get(&self, id: &Uuid) -> Result<Option<Task>> {
        dispatch!(self, s => s.get(id).await)
    }

    pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Option<Task>> {
        dispatch!(self, s => s.get_by_key(namespace, key).await)
    }

    pub async fn list(&self, q: &ListQuery) -> Result<Vec<Task>> {
        dispatch!(self, s => s.list(q).await)
    }

    /// Locks the task, asks `decide` what to do, applies it and commits; returns the task as
    /// it is after the commit, and what `decide` returned. `NotFound` if there is no such task.
    pub async fn transition<T, F>(&self, id: &Uuid, now: i64, decide: F) -> Result<(Task, T)>
    where
        F: FnOnce(&Task) -> (Decision, T) + Send,
        T: Send,
    {
        dispatch!(self, s => s.transition(id, now, decide).await)
    }

    /// [`Store::transition`], consuming an e-mail link in the same transaction when the
    /// decision completes the task.
    pub async fn transition_linked<T, F>(
        &self,
        id: &Uuid,
        now: i64,
        link: Option<&outbox::LinkUse>,
        decide: F,
    ) -> Result<(Task, T)>
    where
        F: FnOnce(&Task) -> (Decision, T) + Send,
        T: Send,
    {
        dispatch!(self, s => s.transition_linked(id, now, link, decide).await)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<crate::users::User>> {
        dispatch!(self, s => s.user_by_email(email).await)
    }

    /// Whether the e-mail link `link_id` answered a task.
    pub async fn link_used(&self, link_id: &str) -> Result<bool> {
        dispatch!(self, s => s.link_used(link_id).await)
    }

    /// Pending tasks whose deadline is at or before `now`, earliest first.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<Uuid>> {
        dispatch!(self, s => s.due(now, limit).await)
    }

    /// Pending tasks with a reminder or escalation due at `now` or before, earliest first.
    pub async fn timers_due(&self, now: i64, limit: i64) -> Result<Vec<Uuid>> {
        dispatch!(self, s => s.timers_due(now, limit).await)
    }

    /// When the next timer or deadline of a pending task is due.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        dispatch!(self, s => s.next_due().await)
    }

    /// Tasks that ended at or after `since` (ms).
    pub async fn ended_since(&self, since: i64) -> Result<Vec<Uuid>> {
        dispatch!(self, s => s.ended_since(since).await)
    }

    /// How many tasks are in each status, one query (statuses with no task are absent).
    pub async fn status_counts(&self) -> Result<Vec<(Status, i64)>> {
        let rows = dispatch!(self, s => s.status_counts().await)?;
        rows.into_iter()
            .map(|(status, n)| Ok((status.parse()?, n)))
            .collect()
    }

    /// A task's audit rows in order.
    pub async fn audit(&self, id: &Uuid) -> Result<Vec<AuditEvent>> {
        dispatch!(self, s => s.audit(id).await)
    }

    pub async fn insert_api_key(&self, key: &crate::apikeys::ApiKey, hash: &str) -> Result<()> {
        dispatch!(self, s => s.insert_api_key(key, hash).await)
    }

    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<crate::apikeys::ApiKey>> {
        dispatch!(self, s => s.api_key_by_hash(hash).await)
    }

    pub async fn api_key(&self, id: &Uuid) -> Result<Option<crate::apikeys::ApiKey>> {
        dispatch!(self, s => s.api_key(id).await)
    }

    pub async fn list_api_keys(&self) -> Result<Vec<crate::apikeys::ApiKey>> {
        dispatch!(self, s => s.list_api_keys().await)
    }

    /// Revokes the key (idempotent); `false` when no key has this id.
    pub async fn revoke_api_key(&self, id: &Uuid, now: i64) -> Result<bool> {
        dispatch!(self, s => s.revoke_api_key(id, now).await)
    }

    /// Sets `last_used_at` unless it was set less than `every_ms` ago.
    pub async fn touch_api_key(&self, id: &Uuid, now: i64, every_ms: i64) -> Result<()> {
        dispatch!(self, s => s.touch_api_key(id, now, every_ms).await)
    }

    /// Tasks per status matching `q` (see the backend's `count_by_status`).
    pub async fn count_by_status(&self, q: &ListQuery) -> Result<Vec<(Status, i64)>> {
        let rows = dispatch!(self, s => s.count_by_status(q).await)?;
        rows.into_iter()
            .map(|(status, n)| Ok((status.parse()?, n)))
            .collect()
    }

    pub async fn insert_user(&self, u: &crate::users::User, password_hash: &str) -> Result<()> {
        dispatch!(self, s => s.insert_user(u, password_hash).await)
    }

    /// Inserts the first admin if no user exists and setup never ran (and, with
    /// `token_hash`, that is the outstanding setup token, consumed in the same transaction);
    /// `false` otherwise.
    pub async fn complete_setup(
        &self,
        u: &crate::users::User,
        password_hash: &str,
        token_hash: Option<&str>,
    ) -> Result<bool> {
        dispatch!(self, s => s.complete_setup(u, password_hash, token_hash).await)
    }

    pub async fn setup_open(&self) -> Result<bool> {
        dispatch!(self, s => s.setup_open().await)
    }

    pub async fn user_for_login(
        &self,
        login: &str,
    ) -> Result<Option<(crate::users::User, String)>> {
        dispatch!(self, s => s.user_for_login(login).await)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<crate::users::User>> {
        dispatch!(self, s => s.user_by_name(name).await)
    }

    pub async fn list_users(&self) -> Result<Vec<crate::users::User>> {
        dispatch!(self, s => s.list_users().await)
    }

    pub async fn set_user_disabled(&self, name: &str, at: Option<i64>, now: i64) -> Result<bool> {
        dispatch!(self, s => s.set_user_disabled(name, at, now).await)
    }

    pub async fn set_user_password(&self, name: &str, hash: &str, now: i64) -> Result<bool> {
        dispatch!(self, s => s.set_user_password(name, hash, now).await)
    }

    pub async fn set_user_groups(&self, name: &str, groups: &[String], now: i64) -> Result<bool> {
        dispatch!(self, s => s.set_user_groups(name, groups, now).await)
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        user: &Uuid,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        dispatch!(self, s => s.insert_session(token_hash, user, csrf, now, expires_at).await)
    }

    /// The session's user, CSRF token, last-seen time and expiry.
    pub async fn session(
        &self,
        token_hash: &str,
    ) -> Result<Option<(crate::users::User, String, i64, i64)>> {
        dispatch!(self, s => s.session(token_hash).await)
    }

    pub async fn touch_session(&self, token_hash: &str, now: i64) -> Result<()> {
        dispatch!(self, s => s.touch_session(token_hash, now).await)
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        dispatch!(self, s => s.delete_session(token_hash).await)
    }

    pub async fn delete_stale_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        dispatch!(self, s => s.delete_stale_sessions(now, idle_before).await)
    }

    pub async fn set_namespace_policy(&self, ns: &str, unassigned: &str, now: i64) -> Result<()> {
        dispatch!(self, s => s.set_namespace_policy(ns, unassigned, now).await)
    }

    pub async fn namespace_policies(&self) -> Result<Vec<(String, String)>> {
        dispatch!(self, s => s.namespace_policies().await)
    }

    pub async fn policy_for_task(&self, id: &Uuid) -> Result<Option<String>> {
        dispatch!(self, s => s.policy_for_task(id).await)
    }

    /// Leases due outbox rows (see the backend's `claim_deliveries`).
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<outbox::Claimed>> {
        dispatch!(self, s => s.claim_deliveries(owner, now, lease_ms, limit).await)
    }

    /// Records an attempt and settles the row if the lease is still held (see the backend's
    /// `finish_delivery`); `false` when the lease was lost.
    pub async fn finish_delivery(
        &self,
        c: &outbox::Claimed,
        worker: &str,
        started_at: i64,
        now: i64,
        finish: &outbox::Finish,
    ) -> Result<bool> {
        dispatch!(self, s => s.finish_delivery(c, worker, started_at, now, finish).await)
    }

    /// Failed delivery rows on the tasks a query's scope covers (see the backend's
    /// `count_failed_deliveries`).
    pub async fn count_failed_deliveries(&self, q: &ListQuery) -> Result<i64> {
        dispatch!(self, s => s.count_failed_deliveries(q).await)
    }

    /// How many failed delivery rows each of `ids` has (absent: none).
    pub async fn failed_delivery_counts(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
        dispatch!(self, s => s.failed_delivery_counts(ids).await)
    }

    /// A task's delivery rows, oldest first.
    pub async fn deliveries(&self, task_id: &Uuid) -> Result<Vec<outbox::Delivery>> {
        dispatch!(self, s => s.deliveries(task_id).await)
    }

    /// Delivery rows in `state` (every state when `None`), oldest first.
    pub async fn deliveries_in(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<outbox::Delivery>> {
        dispatch!(self, s => s.deliveries_in(state, limit).await)
    }

    /// The attempts recorded for one delivery row.
    pub async fn delivery_attempts(&self, outbox_id: i64) -> Result<Vec<outbox::Attempt>> {
        dispatch!(self, s => s.delivery_attempts(outbox_id).await)
    }

    /// Locks the effect `(namespace, key)` (or, when there is none, makes sure no other
    /// writer inserts it first), asks `decide` what to do with it (`None`: no row yet),
    /// writes the row and its audit rows, and commits. Returns the effect as it is after the
    /// commit and what `decide` returned. `decide` may run more than once (on PostgreSQL,
    /// when a concurrent first insert wins), so it must be a pure function of the row.
    pub async fn effect_transition<T, F>(
        &self,
        namespace: &str,
        key: &str,
        now: i64,
        decide: F,
    ) -> Result<(Option<crate::effects::Effect>, T)>
    where
        F: Fn(Option<&crate::effects::Effect>) -> (crate::effects::Step, T) + Send,
        T: Send,
    {
        dispatch!(self, s => s.effect_transition(namespace, key, now, decide).await)
    }

    pub async fn effect(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<crate::effects::Effect>> {
        dispatch!(self, s => s.effect(namespace, key).await)
    }

    /// Effects in `namespace` (all when `None`) in `state` (all when `None`), oldest first.
    pub async fn effects(
        &self,
        namespace: Option<&str>,
        state: Option<crate::effects::EffectState>,
        limit: i64,
    ) -> Result<Vec<crate::effects::Effect>> {
        dispatch!(self, s => s.effects(namespace, state.map(|s| s.as_str()), limit).await)
    }

    /// How many effects are `running` (in doubt to every other caller), all namespaces.
    pub async fn effects_in_doubt_count(&self) -> Result<i64> {
        dispatch!(self, s => s.effects_in_doubt_count().await)
    }

    /// An effect's audit rows in order.
    pub async fn effect_audit(&self, id: &Uuid) -> Result<Vec<crate::effects::EffectEvent>> {
        dispatch!(self, s => s.effect_audit(id).await)
    }

    /// Records a Slack request signature until `expires_at`; `false` for a replay (seen by
    /// any replica on this database).
    pub async fn slack_first_sight(
        &self,
        signature: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool> {
        dispatch!(self, s => s.slack_first_sight(signature, now, expires_at).await)
    }

    /// Failed sign-ins under `key_hash` at or after `since`: how many, and the oldest.
    pub async fn login_failures(&self, key_hash: &str, since: i64) -> Result<(i64, Option<i64>)> {
        dispatch!(self, s => s.login_failures(key_hash, since).await)
    }

    /// Records one failed sign-in under each of `key_hashes`, kept until `expires_at`.
    pub async fn record_login_failure(
        &self,
        key_hashes: &[String],
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        dispatch!(self, s => s.record_login_failure(key_hashes, now, expires_at).await)
    }

    pub async fn clear_login_failures(&self, key_hash: &str) -> Result<()> {
        dispatch!(self, s => s.clear_login_failures(key_hash).await)
    }

    /// Makes `token_hash` the one outstanding setup token (held by `holder` until
    /// `lease_until`) if setup is open and no other token's lease runs; renews it when it
    /// already is. `true` when it is the outstanding token now.
    pub async fn claim_setup_token(
        &self,
        token_hash: &str,
        holder: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        dispatch!(self, s => s.claim_setup_token(token_hash, holder, now, lease_until).await)
    }

    /// Withdraws `token_hash` if it is the outstanding setup token.
    pub async fn release_setup_token(&self, token_hash: &str) -> Result<()> {
        dispatch!(self, s => s.release_setup_token(token_hash).await)
    }

    /// The outstanding setup token: `(hash, holder, created_at, lease_until)`.
    pub async fn setup_token(&self) -> Result<Option<(String, String, i64, i64)>> {
        dispatch!(self, s => s.setup_token().await)
    }

    /// Deletes expired Slack replay entries and sign-in failures; how many rows went.
    pub async fn purge_cluster_state(&self, now: i64) -> Result<u64> {
        dispatch!(self, s => s.purge_cluster_state(now).await)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => {
                s.writer.close().await;
                s.pool.close().await
            }
            Store::Postgres(s) => s.pool.close().await,
        }
    }
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(crate) fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| Error::Internal(format!("stored task id {s:?} is not a UUID")))
}

/// A JSON document bound as PostgreSQL `json` (not `jsonb`, which reorders keys) and as SQLite
/// text: documents come back exactly in the order they were given.
pub(crate) struct JsonDoc<'a>(pub &'a Value);

impl sqlx::Type<sqlx::Postgres> for JsonDoc<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("json")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for JsonDoc<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        // `json`'s binary format is its text.
        serde_json::to_writer(&mut **buf, self.0)?;
        Ok(sqlx::encode::IsNull::No)
    }
}

impl sqlx::Type<sqlx::Sqlite> for JsonDoc<'_> {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for JsonDoc<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(serde_json::to_string(self.0)?, buf)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(super::redact_url("sqlite:x.db"), "sqlite:x.db");
    }
}
