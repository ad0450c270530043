//! The engine: the one API every surface (Python, TypeScript, CLI, server) calls.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::access::{self, Principal, Unassigned};
use crate::audit::{self, ChainCheck, kind};
use crate::error::{Error, FieldError, Result};
use crate::model::{Answer, AuditEvent, Created, ListFilter, NewTask, Page, Status, Task};
use crate::rules;
use crate::schema::{self, Schema};
use crate::store::{Backend, Decision, ListQuery, NewAudit, Store, StoreOptions};
use crate::verify::{self, Judged, Verdict};
use crate::wait::{Hub, Subscription};

/// The verdict of a verifier that runs in the agent (the SDKs' `verifier=`), on the answer the
/// task was completed with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentVerdict {
    /// The task's `attempts` as read with the answer (compare-and-set).
    pub attempts: u32,
    /// `pass`, `reject` or `inconclusive`.
    pub verdict: String,
    /// Why (required for `reject` and `inconclusive`; shown to the human).
    #[serde(default)]
    pub reason: Option<String>,
    /// The verifier's name, recorded in the audit trail (`sdk:...`).
    pub verifier: String,
    /// How long the verifier took.
    #[serde(default)]
    pub latency_ms: u64,
    /// Who reports the verdict (the agent's name); the verifier's name when absent.
    #[serde(default)]
    pub by: Option<String>,
}

impl AgentVerdict {
    fn judged(&self) -> Result<Judged> {
        check_text("verifier", &self.verifier, 200)?;
        let reason = self
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(r) = reason {
            check_text("reason", r, 2000)?;
        }
        let need = |what: &str| {
            Error::InvalidArgument(format!("a {what} verdict needs a non-empty reason"))
        };
        let verdict = match (self.verdict.as_str(), reason) {
            ("pass", _) => Verdict::Pass,
            ("reject", Some(r)) => Verdict::Reject(r.to_string()),
            ("inconclusive", Some(r)) => Verdict::Inconclusive(r.to_string()),
            ("reject", None) => return Err(need("reject")),
            ("inconclusive", None) => return Err(need("inconclusive")),
            (other, _) => {
                return Err(Error::InvalidArgument(format!(
                    "verdict must be pass, reject or inconclusive, not {other:?}"
                )));
            }
        };
        Ok(Judged {
            verdict,
            verifier: self.verifier.clone(),
            model: None,
            latency_ms: self.latency_ms,
            rule: None,
        })
    }
}

/// Tuning knobs; the defaults suit both an agent process and a server.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub store: StoreOptions,
    /// How often SQLite's change watcher checks `PRAGMA data_version` (while anyone waits).
    pub sqlite_poll: Duration,
    /// How often the PostgreSQL waker re-checks recently ended tasks, in case a `NOTIFY` was
    /// lost with a dropped connection.
    pub pg_safety_sweep: Duration,
    /// How often the deadline sweeper times out overdue tasks that nobody waits on here.
    pub expiry_sweep: Duration,
    /// Run migrations on open.
    pub migrate: bool,
    /// Where the LLM verifier reaches each provider, and with which API key (from the
    /// environment by default: docs/verification.md).
    pub verifiers: crate::verify::llm::ProviderConfig,
    /// The time the engine's rules use (creation, deadlines, timers, votes): the system clock,
    /// or a manual one in tests.
    pub clock: crate::clock::Clock,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            store: StoreOptions::default(),
            sqlite_poll: Duration::from_millis(10),
            pg_safety_sweep: Duration::from_secs(10),
            expiry_sweep: Duration::from_secs(1),
            migrate: true,
            verifiers: crate::verify::llm::ProviderConfig::from_env(),
            clock: crate::clock::Clock::System,
        }
    }
}

/// A handle on one database. Cheap to clone; clones share connections and the waker.
///
/// ```no_run
/// # async fn demo() -> inloop_core::Result<()> {
/// use inloop_core::{Engine, EngineOptions, NewTask, Answer};
/// use serde_json::json;
/// let engine = Engine::open("sqlite:.inloop/inloop.db", EngineOptions::default()).await?;
/// let created = engine.create(NewTask {
///     title: "Approve this refund?".into(),
///     payload: json!({"order_id": "A-1", "amount": 500.0}),
///     response_schema: json!({"type": "object", "properties": {"approved": {"type": "boolean"}},
///                              "required": ["approved"]}),
///     key: Some("refund-A-1".into()),
///     ..Default::default()
/// }).await?;
/// // elsewhere: engine.answer(created.task.id, Answer { response: json!({"approved": true}),
/// //                                                   by: "alice".into(), channel: "api".into() })
/// let done = engine.await_response(created.task.id).await?;
/// println!("{:?}", done.response);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// The callback URLs this handle accepts at creation, when it knows the server's list
    /// ([`Engine::with_callback_allow`]); `None`: only the URL's form is checked here (the
    /// dispatcher still refuses what its own list does not allow).
    callbacks: Option<Arc<crate::channels::callback::AllowList>>,
}

struct Inner {
    store: Store,
    hub: Arc<Hub>,
    /// Waiters that have read their task and are parked until a wake (metrics, benchmarks).
    parked: std::sync::atomic::AtomicUsize,
    /// Bounds the waiters reading at once: a hundred thousand waiters starting together queue
    /// here (a few bytes each) instead of each holding a pending query's state.
    reads: tokio::sync::Semaphore,
    opts: EngineOptions,
    background: OnceLock<Background>,
    /// The HTTP client of the LLM verifier (built on first use).
    http: OnceLock<reqwest::Client>,
    /// Signalled when this engine creates a task with timers or a deadline (the sweep may
    /// need to wake earlier than planned).
    created: Arc<tokio::sync::Notify>,
}

struct Background {
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(bg) = self.background.get() {
            for t in bg.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
                t.abort();
            }
        }
    }
}

impl Engine {
    /// Connects to `url` and (by default) migrates. Must run inside a tokio runtime.
    pub async fn open(url: &str, opts: EngineOptions) -> Result<Engine> {
        let store = Store::connect(url, &opts.store).await?;
        if opts.migrate {
            store.migrate().await?;
        }
        Ok(Engine {
            callbacks: None,
            inner: Arc::new(Inner {
                store,
                hub: Hub::new(),
                parked: Default::default(),
                reads: tokio::sync::Semaphore::new(64),
                opts,
                background: OnceLock::new(),
                http: OnceLock::new(),
                created: Arc::new(tokio::sync::Notify::new()),
            }),
        })
    }

    /// The time by the engine's clock (ms since the epoch).
    pub fn now(&self) -> i64 {
        self.inner.opts.clock.now()
    }

    /// This handle, refusing at creation any `callback_url` that `allow` does not permit
    /// (`invalid_argument`; an empty list refuses every callback). Clones share the
    /// connections; other handles are unaffected. `inloop serve` gives its REST API a handle
    /// with its `[callbacks] allow` list.
    pub fn with_callback_allow(self, allow: crate::channels::callback::AllowList) -> Engine {
        Engine {
            inner: self.inner,
            callbacks: Some(Arc::new(allow)),
        }
    }

    /// The callback allow-list this handle enforces at creation, if any.
    pub fn callback_allow(&self) -> Option<&crate::channels::callback::AllowList> {
        self.callbacks.as_deref()
    }

    /// The engine's store (for modules of this crate that keep their own tables).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Which database this engine uses.
    pub fn backend(&self) -> Backend {
        self.inner.store.backend()
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        self.inner.store.migrate().await
    }

    /// Starts the waker and the deadline sweeper (idempotent). Waiting starts them on demand;
    /// a server calls this at startup so deadlines fire even when nobody waits.
    pub fn start_background(&self) {
        self.inner.background.get_or_init(|| {
            let mut tasks = Vec::new();
            let hub = Arc::clone(&self.inner.hub);
            tasks.push(match &self.inner.store {
                Store::Sqlite(s) => s.spawn_waker(hub, self.inner.opts.sqlite_poll),
                Store::Postgres(s) => s.spawn_waker(hub, self.inner.opts.pg_safety_sweep),
            });
            let weak = Arc::downgrade(&self.inner);
            let every = self.inner.opts.expiry_sweep;
            let created = Arc::clone(&self.inner.created);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    let engine = Engine {
                        inner,
                        callbacks: None,
                    };
                    let next = engine.sweep_once().await;
                    drop(engine);
                    // Sleep until the next timer or deadline (one query finds it), at most
                    // `every`: tasks created by other processes are seen within that. Tasks
                    // created here wake the sweep at once.
                    let wait = next.map_or(every, |ms| {
                        Duration::from_millis(ms.clamp(0, every.as_millis() as i64) as u64)
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = created.notified() => {}
                    }
                }
            }));
            Background {
                tasks: Mutex::new(tasks),
            }
        });
    }

    /// Creates the task, or returns the one its `(namespace, key)` already names. The same key
    /// with a different title, payload or schema is [`Error::KeyReused`].
    pub async fn create(&self, new: NewTask) -> Result<Created> {
        let task = self.prepare_new(new)?;
        self.insert(task).await
    }

    fn prepare_new(&self, new: NewTask) -> Result<Prepared> {
        let requested_by = new.requested_by.clone();
        let task = prepare(new, self.now())?;
        if let (Some(url), Some(allow)) = (&task.callback_url, &self.callbacks) {
            allow.check(url)?;
        }
        Ok(Prepared { task, requested_by })
    }

    async fn insert(&self, p: Prepared) -> Result<Created> {
        let Prepared { task, requested_by } = p;
        let mut data = json!({ "digest": task.digest, "deadline": task.deadline.map(crate::model::format_ms) });
        if let Some(url) = &task.callback_url {
            // Where the end will be sent is part of the record (it is not in the digest).
            data["callback_url"] = json!(url);
        }
        let created = NewAudit {
            actor: requested_by,
            channel: None,
            kind: kind::CREATED,
            data,
        };
        let (stored, inserted) = self.inner.store.insert_or_get(&task, created).await?;
        if !inserted && stored.digest != task.digest {
            return Err(Error::KeyReused {
                namespace: stored.namespace,
                key: stored.key,
                existing: stored.id,
                existing_digest: stored.digest,
                new_digest: task.digest,
            });
        }
        if inserted && (stored.deadline.is_some() || !stored.timers.is_empty()) {
            self.inner.created.notify_one();
        }
        Ok(Created {
            task: stored,
            created: inserted,
        })
    }

    /// The task with this id.
    pub async fn get(&self, id: Uuid) -> Result<Task> {
        self.inner
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// The task `key` names in `namespace`.
    pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Task> {
        check_namespace(namespace)?;
        self.inner
            .store
            .get_by_key(namespace, key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("with key {key:?} in namespace {namespace:?}")))
    }

    /// Tasks matching `filter`, newest first, one page at a time.
    pub async fn list(&self, filter: ListFilter) -> Result<Page> {
        self.list_as(filter, &Principal::Trusted).await
    }

    /// [`Engine::list`], restricted to what `who` may see (an API key: its namespace; a
    /// reviewer: tasks assigned to them, claimed or answered by them, and unassigned tasks
    /// unless the namespace keeps those for admins).
    pub async fn list_as(&self, filter: ListFilter, who: &Principal) -> Result<Page> {
        self.list_scoped(filter, who, false).await
    }

    /// [`Engine::list_as`]; with `failed_deliveries`, only tasks that have a failed delivery
    /// (the dashboard's filter).
    pub async fn list_scoped(
        &self,
        filter: ListFilter,
        who: &Principal,
        failed_deliveries: bool,
    ) -> Result<Page> {
        let limit = filter.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "limit must be 1..=1000, not {limit}"
            )));
        }
        let before_id = match filter.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(
                Uuid::parse_str(c)
                    .map_err(|_| Error::InvalidArgument(format!("bad cursor {c:?}")))?
                    .to_string(),
            ),
            None => None,
        };
        let mut q = self.scope(filter.namespace, filter.key_prefix, filter.assignee, who)?;
        q.status = filter.status;
        q.created_after = filter.created_after;
        q.created_before = filter.created_before;
        q.before_id = before_id;
        q.failed_deliveries = failed_deliveries;
        q.limit = i64::from(limit) + 1;
        let mut items = self.inner.store.list(&q).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| t.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// How many tasks `who` can see in each status (every status, in a fixed order),
    /// within `namespace`, key prefix and assignee when given.
    pub async fn counts_as(
        &self,
        namespace: Option<String>,
        key_prefix: Option<String>,
        assignee: Option<String>,
        who: &Principal,
    ) -> Result<Vec<(Status, u64)>> {
        let q = self.scope(namespace, key_prefix, assignee, who)?;
        Ok(fill_counts(&self.inner.store.count_by_status(&q).await?))
    }

    /// How many deliveries have failed (`delivery_failed`) on the tasks `who` can see, within
    /// the same scope as [`Engine::counts_as`].
    pub async fn failed_deliveries_as(
        &self,
        namespace: Option<String>,
        key_prefix: Option<String>,
        assignee: Option<String>,
        who: &Principal,
    ) -> Result<u64> {
        let q = self.scope(namespace, key_prefix, assignee, who)?;
        Ok(self.inner.store.count_failed_deliveries(&q).await?.max(0) as u64)
    }

    /// How many deliveries have failed on each of `tasks` (tasks with none are absent). The
    /// caller shows only tasks it was allowed to list: nothing is checked here.
    pub async fn failed_delivery_counts(
        &self,
        tasks: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, u64>> {
        Ok(self
            .inner
            .store
            .failed_delivery_counts(tasks)
            .await?
            .into_iter()
            .map(|(id, n)| (id, n.max(0) as u64))
            .collect())
    }

    /// The task's deliveries (every channel, its callback, each event), oldest first, if
    /// `who` may see the task; `NotFound` otherwise.
    pub async fn deliveries_as(
        &self,
        id: Uuid,
        who: &Principal,
    ) -> Result<Vec<crate::store::outbox::Delivery>> {
        self.get_as(id, who).await?;
        self.inner.store.deliveries(&id).await
    }

    /// The part of a listing query that says what `who` may see.
    fn scope(
        &self,
        namespace: Option<String>,
        key_prefix: Option<String>,
        assignee: Option<String>,
        who: &Principal,
    ) -> Result<ListQuery> {
        if let Some(ns) = &namespace {
            check_namespace(ns)?;
        }
        let namespace = match who {
            Principal::ApiKey(k) => match namespace {
                Some(ns) if ns != k.namespace => {
                    return Err(Error::Forbidden(format!(
                        "this API key is for namespace {:?}, not {ns:?}",
                        k.namespace
                    )));
                }
                _ => Some(k.namespace.clone()),
            },
            _ => namespace,
        };
        let viewer = match who {
            Principal::User(u) if u.role != crate::users::Role::Admin => Some(u.clone()),
            _ => None,
        };
        Ok(ListQuery {
            namespace,
            key_prefix: key_prefix.filter(|p| !p.is_empty()),
            assignee: assignee.filter(|a| !a.is_empty()),
            viewer,
            ..Default::default()
        })
    }

    /// The task, if `who` may see it; `NotFound` otherwise (its existence is not revealed).
    pub async fn get_as(&self, id: Uuid, who: &Principal) -> Result<Task> {
        let task = self.get(id).await?;
        let policy = self.policy(&id, who).await?;
        if access::can_see(&task, who, policy) {
            Ok(task)
        } else {
            Err(Error::NotFound(id.to_string()))
        }
    }

    /// What `who` may do on `task` now (answer, claim, release, cancel), by the same rules the
    /// actions themselves apply (for pages that offer only what will work).
    pub async fn permissions(&self, task: &Task, who: &Principal) -> Result<access::Permissions> {
        let policy = self.policy(&task.id, who).await?;
        Ok(access::permissions(task, who, policy))
    }

    /// The unassigned-task policy that applies to `who` acting on task `id` (read only for
    /// reviewers: nobody else depends on it).
    async fn policy(&self, id: &Uuid, who: &Principal) -> Result<Unassigned> {
        match who {
            Principal::User(u) if u.role != crate::users::Role::Admin => {
                match self.inner.store.policy_for_task(id).await? {
                    Some(p) => p.parse(),
                    None => Ok(Unassigned::default()),
                }
            }
            _ => Ok(Unassigned::default()),
        }
    }

    /// Sets who may see and answer the unassigned tasks of `namespace`.
    pub async fn set_unassigned_policy(&self, namespace: &str, policy: Unassigned) -> Result<()> {
        check_namespace(namespace)?;
        self.inner
            .store
            .set_namespace_policy(namespace, policy.as_str(), self.now())
            .await
    }

    /// Every namespace with a policy set, and its policy (others use the default).
    pub async fn unassigned_policies(&self) -> Result<Vec<(String, Unassigned)>> {
        self.inner
            .store
            .namespace_policies()
            .await?
            .into_iter()
            .map(|(ns, p)| Ok((ns, p.parse()?)))
            .collect()
    }

    /// Every committed change from now on, from this process or any other on the same
    /// database (starts the backend's watcher). For live views; a receiver that falls behind
    /// gets `Lagged` and should refresh.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<crate::wait::Change> {
        self.start_background();
        self.inner.hub.changes()
    }

    /// Submits an answer with direct database access (trusted, like an admin: the SDKs and the
    /// CLI). See [`Engine::answer_as`].
    pub async fn answer(&self, id: Uuid, answer: Answer) -> Result<Task> {
        self.answer_as(id, answer, &Principal::Trusted).await
    }

    /// Submits an answer on behalf of `who`. Who may answer is checked here, under the task's
    /// row lock ([`access::check_answer`]): a refusal is `forbidden` (audited), or `not_found`
    /// for a task `who` may not see. A signed-in user always answers as themselves. The answer
    /// is validated against the response schema; an invalid answer leaves the task pending
    /// and is audited. Exactly one answer is accepted: any later one gets
    /// [`Error::Conflict`] naming who answered and when.
    pub async fn answer_as(&self, id: Uuid, answer: Answer, who: &Principal) -> Result<Task> {
        self.answer_linked(id, answer, who, None).await
    }

    /// [`Engine::answer_as`] for an answer that came through a single-use e-mail link: the
    /// link is consumed in the transaction that accepts the answer (and only then), so a
    /// refused answer leaves it usable and a used link can never answer again.
    pub async fn answer_with_link(
        &self,
        id: Uuid,
        answer: Answer,
        who: &Principal,
        link: &crate::store::outbox::LinkUse,
    ) -> Result<Task> {
        self.answer_linked(id, answer, who, Some(link)).await
    }

    async fn answer_linked(
        &self,
        id: Uuid,
        mut answer: Answer,
        who: &Principal,
        link: Option<&crate::store::outbox::LinkUse>,
    ) -> Result<Task> {
        if let Principal::User(u) = who {
            answer.by = u.name.clone();
        }
        check_actor(&answer.by)?;
        check_channel(&answer.channel)?;
        let policy = self.policy(&id, who).await?;
        // Who votes, for tasks with approvers: the signed-in user, else the user `by` names
        // (looked up only when the task turns out to need it).
        let mut voter: Option<access::Identity> = match who {
            Principal::User(u) => Some(u.clone()),
            _ => None,
        };
        let (after, result) = loop {
            let now = self.now();
            let token = Uuid::now_v7().to_string();
            let mut need_voter = false;
            let voter_ref = voter.as_ref();
            let too_large =
                schema::check_size("answer", &answer.response, schema::MAX_DOCUMENT_BYTES).err();
            // Validated under the row lock: one read, and the schema and rules are the stored
            // ones.
            let (after, result) = self
                .inner
                .store
                .transition_linked(&id, now, link, |t| {
                    let plain = |(d, r): (Decision, Result<()>)| {
                        (d, r.map(|()| rules::Submitted::Accepted))
                    };
                    if let Err(e) = access::check_answer(t, who, policy) {
                        return plain(rules::refuse_access(t, &answer.by, &answer.channel, e));
                    }
                    let has_approvers = t.policy.as_ref().is_some_and(|p| p.approvers.is_some());
                    if has_approvers && t.status == Status::Pending {
                        let Some(v) = voter_ref else {
                            need_voter = true;
                            return (Decision::default(), Ok(rules::Submitted::Accepted));
                        };
                        if let Err(e) = access::check_voter(t, v) {
                            return plain(rules::refuse_access(t, &answer.by, &answer.channel, e));
                        }
                    }
                    let invalid = match too_large {
                        Some(e) => Some(e),
                        None => match Schema::compile("response_schema", &t.response_schema) {
                            Err(e) => return (Default::default(), Err(e)),
                            Ok(s) => {
                                let mut errors = s.errors(&answer.response);
                                errors.extend(nul_errors(&answer.response));
                                (!errors.is_empty()).then_some(Error::InvalidAnswer { errors })
                            }
                        },
                    };
                    match (invalid, &t.verification) {
                        (Some(err), _) => plain(rules::invalid_answer(
                            t,
                            &answer.by,
                            &answer.channel,
                            err,
                            now,
                        )),
                        (None, None) if has_approvers => {
                            plain(rules::vote(t, &answer, voter_ref, now))
                        }
                        (None, None) => plain(rules::answer(t, &answer, now)),
                        (None, Some(v)) => {
                            let judged = verify::run_rules(v, &t.payload, &answer.response);
                            let until = now
                                + v.llm.as_ref().map_or(0, |l| l.timeout_ms as i64)
                                + rules::LEASE_GRACE_MS;
                            rules::submit(
                                t,
                                &answer,
                                &judged,
                                v.llm.is_some(),
                                (token.clone(), until),
                                now,
                            )
                        }
                    }
                })
                .await?;
            if !need_voter {
                break (after, result);
            }
            let user = match self
                .inner
                .store
                .user_by_name(&answer.by.to_lowercase())
                .await?
            {
                Some(u) => Some(u),
                None => {
                    self.inner
                        .store
                        .user_by_email(&answer.by.to_lowercase())
                        .await?
                }
            };
            voter = Some(access::identity_of(&answer.by, user.as_ref()));
        };
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        match result? {
            rules::Submitted::Accepted => Ok(after),
            rules::Submitted::Verifying { token } => {
                // The LLM call runs outside any transaction or lock, in its own task: a caller
                // that goes away (a closed HTTP connection) does not strand the lease.
                let engine = self.clone();
                tokio::spawn(async move { engine.finish_verification(after, answer, token).await })
                    .await
                    .map_err(|e| Error::Internal(format!("the verification task failed: {e}")))?
            }
        }
    }

    /// Runs the task's LLM verifier on `answer` (which holds lease `token`), then applies the
    /// verdict with a compare-and-set on the lease.
    async fn finish_verification(&self, task: Task, answer: Answer, token: String) -> Result<Task> {
        let Some(spec) = task.verification.as_ref().and_then(|v| v.llm.as_ref()) else {
            return Err(Error::Internal(
                "verifying a task without an LLM verifier".into(),
            ));
        };
        let http = self.inner.http.get_or_init(reqwest::Client::new);
        let ctx = verify::llm::Context {
            title: &task.title,
            payload: &task.payload,
            response_schema: &task.response_schema,
            answer: &answer.response,
            answered_by: &answer.by,
            previous: &task.rejections,
        };
        let judged = verify::llm::verify(http, &self.inner.opts.verifiers, spec, &ctx).await;
        let id = task.id;
        let now = self.now();
        let (after, result) = self
            .inner
            .store
            .transition(&id, now, |t| {
                rules::apply_verdict(t, &token, &answer, &judged, now)
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        result.map(|()| after)
    }

    /// Records the agent's own (SDK) verifier's verdict on the completed task's answer, with
    /// direct database access. See [`Engine::submit_verdict_as`].
    pub async fn submit_verdict(&self, id: Uuid, v: AgentVerdict) -> Result<Task> {
        self.submit_verdict_as(id, v, &Principal::Trusted).await
    }

    /// Records the agent's verifier's verdict on `id`'s accepted answer, on behalf of `who`
    /// (trusted callers and API keys of the task's namespace, like a cancel). `v.attempts` must
    /// be the task's `attempts` as read with the answer (compare-and-set: a verdict on an
    /// answer already judged is `conflict`). `pass` keeps the task completed; `reject` sends it
    /// back to pending (an attempt is counted, the reason recorded for the human) or, on the
    /// last attempt, ends it with [`Error::VerificationExhausted`]; `inconclusive` follows the
    /// task's fail policy (fail-closed reopens without counting an attempt). Returns the task
    /// as it is after the verdict.
    ///
    /// ```no_run
    /// # async fn demo(engine: inloop_core::Engine, id: uuid::Uuid) -> inloop_core::Result<()> {
    /// use inloop_core::engine::AgentVerdict;
    /// let done = engine.await_response(id).await?;
    /// let task = engine.submit_verdict(id, AgentVerdict {
    ///     attempts: done.attempts, verdict: "reject".into(),
    ///     reason: Some("the amount is over the order total".into()),
    ///     verifier: "sdk:amount_check".into(), latency_ms: 1, by: None,
    /// }).await?;
    /// assert_eq!(task.status, inloop_core::Status::Pending);
    /// # Ok(()) }
    /// ```
    pub async fn submit_verdict_as(
        &self,
        id: Uuid,
        v: AgentVerdict,
        who: &Principal,
    ) -> Result<Task> {
        let judged = v.judged()?;
        let by = v.by.clone().unwrap_or_else(|| judged.verifier.clone());
        check_actor(&by)?;
        let channel = "sdk";
        let policy = self.policy(&id, who).await?;
        let now = self.now();
        let (after, result) = self
            .inner
            .store
            .transition(&id, now, |t| {
                if let Err(e) = access::check_cancel(t, who, policy) {
                    return (Decision::default(), Err(e));
                }
                rules::agent_verdict(t, v.attempts, &judged, &by, channel, now)
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        match result {
            Ok(()) | Err(Error::VerificationRejected { .. }) => Ok(after),
            Err(e) => Err(e),
        }
    }

    /// Cancels a pending task with direct database access; `Conflict` if it already ended.
    pub async fn cancel(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        reason: Option<&str>,
    ) -> Result<Task> {
        self.cancel_as(id, by, channel, reason, &Principal::Trusted)
            .await
    }

    /// Cancels a pending task on behalf of `who` (admins, trusted callers and API keys of the
    /// task's namespace; see [`access::check_cancel`]).
    pub async fn cancel_as(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        reason: Option<&str>,
        who: &Principal,
    ) -> Result<Task> {
        let by = match who {
            Principal::User(u) => u.name.as_str(),
            _ => by,
        };
        check_actor(by)?;
        check_channel(channel)?;
        if let Some(r) = reason
            && r.len() > schema::MAX_TITLE_BYTES
        {
            return Err(Error::InvalidArgument(format!(
                "reason is {} bytes, over the limit of {}",
                r.len(),
                schema::MAX_TITLE_BYTES
            )));
        }
        let policy = self.policy(&id, who).await?;
        let now = self.now();
        let (after, result) = self
            .inner
            .store
            .transition(&id, now, |t| {
                if let Err(e) = access::check_cancel(t, who, policy) {
                    return (Decision::default(), Err(e));
                }
                rules::cancel(t, by, channel, reason, now)
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        result.map(|()| after)
    }

    /// Claims a pending task for `by` (a signed-in user always claims for themselves): while
    /// claimed, only they or an admin may answer. Claiming one's own claim again changes
    /// nothing; a task claimed by someone else is `forbidden`.
    pub async fn claim(&self, id: Uuid, by: &str, channel: &str, who: &Principal) -> Result<Task> {
        self.claim_or_release(id, by, channel, who, true).await
    }

    /// Releases the task's claim (the claimer, or an admin). Releasing an unclaimed task
    /// changes nothing.
    pub async fn release(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        who: &Principal,
    ) -> Result<Task> {
        self.claim_or_release(id, by, channel, who, false).await
    }

    async fn claim_or_release(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        who: &Principal,
        claim: bool,
    ) -> Result<Task> {
        let by = match who {
            Principal::User(u) => u.name.as_str(),
            _ => by,
        };
        check_actor(by)?;
        check_channel(channel)?;
        let policy = self.policy(&id, who).await?;
        let now = self.now();
        let (after, result) = self
            .inner
            .store
            .transition(&id, now, |t| {
                let allowed = if claim {
                    access::check_claim(t, who, by, policy)
                } else {
                    access::check_release(t, who, by, policy)
                };
                if let Err(e) = allowed {
                    return (Decision::default(), Err(e));
                }
                if claim {
                    rules::claim(t, by, channel, now)
                } else {
                    rules::release(t, by, channel, now)
                }
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        result.map(|()| after)
    }

    /// Times the task out if it is pending and past its deadline; returns it as it is now.
    pub async fn expire(&self, id: Uuid) -> Result<Task> {
        Ok(self.expire_one(id).await?.0)
    }

    /// [`Engine::expire`], also telling whether this call (not a concurrent one) ended it.
    async fn expire_one(&self, id: Uuid) -> Result<(Task, bool)> {
        let now = self.now();
        let (after, ended_here) = self
            .inner
            .store
            .transition(&id, now, |t| {
                let (decision, ()) = rules::expire(t, now);
                let ends = decision.update.is_some();
                (decision, ends)
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        Ok((after, ended_here))
    }

    /// One pass of the background sweep: fires due timers, times out overdue tasks; returns
    /// how long until the next timer or deadline is due (`None`: nothing is scheduled).
    async fn sweep_once(&self) -> Option<i64> {
        if let Err(e) = self.fire_due_timers().await {
            tracing::warn!(error = %e, "inloop: timer sweep failed");
        }
        if let Err(e) = self.expire_due().await {
            tracing::warn!(error = %e, "inloop: deadline sweep failed");
        }
        match self.inner.store.next_due().await {
            Ok(next) => next.map(|at| at - self.now()),
            Err(e) => {
                tracing::warn!(error = %e, "inloop: cannot read the next due time");
                None
            }
        }
    }

    /// Fires every reminder and escalation step that is due (each once, even when several
    /// processes sweep the same database); returns how many this call fired. `inloop serve`
    /// runs this in the background; tests with a manual clock call it directly.
    pub async fn fire_due_timers(&self) -> Result<usize> {
        let mut fired = 0;
        loop {
            let now = self.now();
            let due = self.inner.store.timers_due(now, 500).await?;
            let n = due.len();
            for id in due {
                let now = self.now();
                let (after, k) = self
                    .inner
                    .store
                    .transition(&id, now, |t| rules::fire_timers(t, now))
                    .await?;
                if after.status.is_final() {
                    self.inner.hub.wake(&id);
                }
                fired += k;
            }
            if n < 500 {
                return Ok(fired);
            }
        }
    }

    /// Times out every overdue pending task; returns how many this call ended.
    pub async fn expire_due(&self) -> Result<usize> {
        let mut ended = 0;
        loop {
            let due = self.inner.store.due(self.now(), 500).await?;
            let n = due.len();
            for id in due {
                if self.expire_one(id).await?.1 {
                    ended += 1;
                }
            }
            if n < 500 {
                return Ok(ended);
            }
        }
    }

    /// Waits until the task ends, or until `limit` passes (then returns it still pending).
    /// Enforces the deadline itself: when it passes, the task is timed out (compare-and-set,
    /// audited) and returned. Dropping the future at any point changes nothing.
    pub async fn wait(&self, id: Uuid, limit: Option<Duration>) -> Result<Task> {
        self.start_background();
        let sub = self.inner.hub.subscribe(id);
        let seen = sub.wakes();
        let limit_at = limit.map(|d| Instant::now() + d);
        self.park(&sub, id, limit_at, seen, None).await
    }

    /// The waiting loop. `known` is the task as read after `seen` was taken from `sub`.
    async fn park(
        &self,
        sub: &Subscription,
        id: Uuid,
        limit_at: Option<Instant>,
        mut seen: u64,
        mut known: Option<Box<Task>>,
    ) -> Result<Task> {
        // Tasks and query futures are boxed so that a parked waiter's own state stays small.
        loop {
            let task: Box<Task> = match known.take() {
                Some(t) => t,
                None => {
                    let _permit = self.inner.reads.acquire().await;
                    seen = sub.wakes();
                    Box::new(Box::pin(self.get(id)).await?)
                }
            };
            if task.status.is_final() {
                return Ok(*task);
            }
            let now = self.now();
            if task.deadline.is_some_and(|d| d <= now) {
                let t = Box::pin(self.expire(id)).await?;
                if t.status.is_final() {
                    return Ok(t);
                }
                continue;
            }
            if limit_at.is_some_and(|l| l <= Instant::now()) {
                return Ok(*task);
            }
            let deadline_at = task
                .deadline
                .map(|d| Instant::now() + Duration::from_millis((d - now).max(0) as u64));
            let wake_at = match (deadline_at, limit_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Keep nothing of the task across the park: a parked waiter stays small.
            drop(task);
            let notified = sub.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if sub.wakes() != seen {
                continue; // woken since the read: read again
            }
            let _parked = ParkedGuard::new(&self.inner.parked);
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Creates the task (or finds the one its key names) and waits for its outcome: what
    /// `await_human` does, in one call. A fresh task is subscribed to before it is inserted,
    /// so no read is needed before parking.
    pub async fn ask(&self, new: NewTask) -> Result<Task> {
        self.start_background();
        let task = self.prepare_new(new)?;
        let sub = self.inner.hub.subscribe(task.id);
        let seen = sub.wakes();
        let created = Box::pin(self.insert(task)).await?;
        if created.created {
            let id = created.task.id;
            let known = Some(Box::new(created.task));
            rules::outcome(Box::pin(self.park(&sub, id, None, seen, known)).await?)
        } else {
            drop(sub);
            self.await_response(created.task.id).await
        }
    }

    /// Waits for the task's outcome: the completed task, or [`Error::TimedOut`] /
    /// [`Error::Cancelled`]. Never returns a pending task.
    pub async fn await_response(&self, id: Uuid) -> Result<Task> {
        rules::outcome(self.wait(id, None).await?)
    }

    /// The task's audit trail, oldest first.
    pub async fn audit(&self, id: Uuid) -> Result<Vec<AuditEvent>> {
        let events = self.inner.store.audit(&id).await?;
        if events.is_empty() {
            self.get(id).await?; // NotFound for an unknown id
        }
        Ok(events)
    }

    /// Verifies the task's audit hash chain.
    pub async fn verify_audit(&self, id: Uuid) -> Result<ChainCheck> {
        Ok(audit::verify_chain(&self.audit(id).await?))
    }

    /// How many tasks (all namespaces) are in each status, every status listed (zero when
    /// none), in a fixed order; one query (for metrics).
    pub async fn status_counts(&self) -> Result<Vec<(Status, u64)>> {
        Ok(fill_counts(&self.inner.store.status_counts().await?))
    }

    /// Closes the engine's connections and stops its background work.
    pub async fn close(&self) {
        if let Some(bg) = self.inner.background.get() {
            for t in bg.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
                t.abort();
            }
        }
        self.inner.store.close().await;
    }

    /// How many waiters in this process have read their task and are parked until a wake
    /// (for tests, metrics and benchmarks).
    pub fn parked(&self) -> usize {
        self.inner.parked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many distinct task ids this process is waiting on (parked or reading).
    pub fn watched(&self) -> usize {
        self.inner.hub.len()
    }
}

/// Every status, in the order [`Engine::status_counts`] reports them.
const STATUSES: [Status; 5] = [
    Status::Pending,
    Status::Completed,
    Status::TimedOut,
    Status::Cancelled,
    Status::VerificationExhausted,
];

/// Every status with its count (zero when absent from `rows`), in [`STATUSES`] order.
fn fill_counts(rows: &[(Status, i64)]) -> Vec<(Status, u64)> {
    STATUSES
        .iter()
        .map(|&s| {
            let n = rows.iter().find(|(r, _)| *r == s).map_or(0, |(_, n)| *n);
            (s, n.max(0) as u64)
        })
        .collect()
}

/// Counts a waiter as parked while alive (dropped on wake, timeout or cancellation).
struct ParkedGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> ParkedGuard<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ParkedGuard(counter)
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A checked creation request, ready to insert.
struct Prepared {
    task: Task,
    requested_by: Option<String>,
}

impl std::ops::Deref for Prepared {
    type Target = Task;
    fn deref(&self) -> &Task {
        &self.task
    }
}

/// Checks a creation request and builds the task row.
fn prepare(new: NewTask, now: i64) -> Result<Task> {
    let namespace = new.namespace.unwrap_or_else(|| "default".into());
    check_namespace(&namespace)?;
    let id = Uuid::now_v7();
    let key = match new.key {
        Some(k) => {
            check_text("key", &k, schema::MAX_KEY_BYTES)?;
            k
        }
        None => id.to_string(),
    };
    check_text("title", &new.title, schema::MAX_TITLE_BYTES)?;
    if new.title.trim().is_empty() {
        return Err(Error::InvalidArgument("title must not be empty".into()));
    }
    if let Some(by) = &new.requested_by {
        check_actor(by)?;
    }
    schema::check_size("payload", &new.payload, schema::MAX_DOCUMENT_BYTES)?;
    let response = Schema::compile("response_schema", &new.response_schema)?;
    drop(response);
    let mut errors = nul_errors(&new.payload);
    if let Some(ps) = &new.payload_schema {
        errors.extend(Schema::compile("payload_schema", ps)?.errors(&new.payload));
    }
    if !errors.is_empty() {
        return Err(Error::InvalidPayload { errors });
    }
    check_targets("notify", &new.notify, true)?;
    check_targets("assign_to", &new.assign_to, false)?;
    let callback_url = new
        .callback_url
        .as_deref()
        .map(crate::channels::callback::normalize)
        .transpose()?;
    let deadline = match new.timeout_ms {
        None => None,
        Some(0) => return Err(Error::InvalidArgument("timeout must be positive".into())),
        Some(ms) if ms > 10 * 366 * 24 * 3600 * 1000 => {
            return Err(Error::InvalidArgument(
                "timeout must be at most ten years".into(),
            ));
        }
        Some(ms) => Some(now + ms as i64),
    };
    if let Some(v) = &new.verification {
        v.check()?;
    }
    let policy = new.policy.filter(|p| !p.is_empty());
    let mut assign_to = new.assign_to;
    let mut timers = Vec::new();
    if let Some(p) = &policy {
        check_policy(p, &new.response_schema, new.verification.is_some())?;
        if p.approvers
            .as_ref()
            .is_some_and(|a| a.exclude_requester && new.requested_by.is_none())
        {
            return Err(Error::InvalidArgument(
                "policy: approvers.exclude_requester needs requested_by (who asks)".into(),
            ));
        }
        // Approvers see the task: they are assigned to it (escalations add theirs later).
        for a in p.approvers.iter().flat_map(|a| &a.any_of) {
            if !assign_to.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                assign_to.push(a.clone());
            }
        }
        if deadline.is_none() && matches!(p.on_timeout, crate::policy::OnTimeout::Default(_)) {
            return Err(Error::InvalidArgument(
                "policy: on_timeout's default answer needs a timeout (timeout_ms) to stand in for"
                    .into(),
            ));
        }
        if let Some(d) = deadline {
            // A step due after the deadline would never fire: say so instead of storing it.
            if let Some(t) = p.timers(now).iter().find(|t| t.due_at >= d) {
                return Err(Error::InvalidArgument(format!(
                    "policy: {} {} is due after the task's timeout",
                    t.kind, t.index
                )));
            }
        }
        timers = p.timers(now);
    }
    // The verification contract and the policy are part of what the agent asked: the same key
    // with other rules, approvers or timers is a different request (`key_reused`).
    let verification = new.verification.as_ref().map(|v| v.to_json());
    let policy_json = policy
        .as_ref()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null));
    let digest = schema::request_digest(
        &new.title,
        &new.payload,
        new.payload_schema.as_ref(),
        &new.response_schema,
        verification.as_ref(),
        policy_json.as_ref(),
    );
    Ok(Task {
        id,
        namespace,
        key,
        title: new.title,
        payload: new.payload,
        payload_schema: new.payload_schema,
        response_schema: new.response_schema,
        digest,
        notify: new.notify,
        assign_to,
        status: Status::Pending,
        response: None,
        answered_by: None,
        answered_via: None,
        cancelled_by: None,
        cancel_reason: None,
        claimed_by: None,
        claimed_at: None,
        created_at: now,
        updated_at: now,
        deadline,
        ended_at: None,
        verification: new.verification,
        attempts: 0,
        rejections: Vec::new(),
        verifying_until: None,
        verify_token: None,
        requested_by: new.requested_by,
        policy,
        votes: Vec::new(),
        timers,
        callback_url,
    })
}

/// Checks a policy against the task it comes with.
fn check_policy(p: &crate::policy::Policy, response_schema: &Value, verified: bool) -> Result<()> {
    p.check()?;
    for (i, e) in p.escalate.iter().enumerate() {
        check_targets(&format!("policy: escalate[{i}].notify"), &e.notify, true)?;
    }
    if p.required() > 1 {
        if !crate::dashboard::form::is_approval(response_schema) {
            return Err(Error::InvalidArgument(
                "policy: approvers.required above 1 needs an approval response schema (one \
                 required boolean, optional text fields): votes are counted as approve or reject"
                    .into(),
            ));
        }
        if verified {
            return Err(Error::InvalidArgument(
                "policy: approvers.required above 1 cannot be combined with verification".into(),
            ));
        }
    }
    if let crate::policy::OnTimeout::Default(v) = &p.on_timeout {
        let errors = Schema::compile("response_schema", response_schema)?.errors(v);
        if !errors.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "policy: on_timeout's default answer does not match the response schema: {}",
                errors
                    .iter()
                    .map(|e| format!("{} {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if s.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes, over the limit of {max}",
            s.len()
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::InvalidArgument(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_namespace(ns: &str) -> Result<()> {
    check_text("namespace", ns, schema::MAX_NAMESPACE_BYTES)?;
    if !ns
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(Error::InvalidArgument(format!(
            "namespace {ns:?} may only contain ASCII letters, digits and - _ . :"
        )));
    }
    Ok(())
}

fn check_actor(by: &str) -> Result<()> {
    if by.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "who answers (`by`) must be given".into(),
        ));
    }
    check_text("by", by, schema::MAX_ACTOR_BYTES)
}

fn check_channel(channel: &str) -> Result<()> {
    check_text("channel", channel, 64)
}

fn check_targets(what: &str, targets: &[String], need_kind: bool) -> Result<()> {
    if targets.len() > 50 {
        return Err(Error::InvalidArgument(format!(
            "{what} has more than 50 entries"
        )));
    }
    for t in targets {
        check_text(what, t, schema::MAX_ACTOR_BYTES)?;
        if need_kind {
            let ok = t.split_once(':').is_some_and(|(k, rest)| {
                !k.is_empty() && !rest.is_empty() && k.chars().all(|c| c.is_ascii_lowercase())
            });
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "{what} entry {t:?} must look like CHANNEL:TARGET, e.g. \"slack:#ops\""
                )));
            }
            if t.starts_with("callback:") {
                return Err(Error::InvalidArgument(format!(
                    "{what} entry {t:?}: a task's end goes to a URL through callback_url, not notify"
                )));
            }
        }
    }
    Ok(())
}

/// Strings containing U+0000 are refused on both backends (PostgreSQL cannot store them).
fn nul_errors(v: &Value) -> Vec<FieldError> {
    fn walk(v: &Value, path: &mut String, out: &mut Vec<FieldError>) {
        match v {
            Value::String(s) if s.contains('\0') => out.push(FieldError {
                path: path.clone(),
                message: "strings must not contain the NUL character (U+0000)".into(),
            }),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    if k.contains('\0') {
                        out.push(FieldError {
                            path: path.clone(),
                            message: "keys must not contain the NUL character (U+0000)".into(),
                        });
                    }
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut String::new(), &mut out);
    out
}
