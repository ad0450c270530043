//! The engine: the one API every surface (Python, TypeScript, CLI, server) calls.
//!
//! One `Engine` handle, its methods grouped by what they do: creating tasks (`create`), reading
//! and listing them (`read`), who may see them (`visibility`), answering (`answer`), the
//! verifiers' verdicts (`verdicts`), cancel, claim, release and expire (`transitions`), waiting
//! (`wait`) and the background sweep (`sweep`). Input checks are in `checks`.

use std::sync::{Arc, Mutex, OnceLock};

use crate::error::Result;
use crate::store::{Backend, Store};
use crate::wait::Hub;

mod answer;
mod checks;
mod create;
mod options;
mod read;
mod sweep;
mod transitions;
mod verdicts;
mod visibility;
mod wait;

pub(crate) use checks::{check_namespace, check_text};
pub use options::EngineOptions;
pub use verdicts::AgentVerdict;

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

    /// Every committed change from now on, from this process or any other on the same
    /// database (starts the backend's watcher). For live views; a receiver that falls behind
    /// gets `Lagged` and should refresh.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<crate::wait::Change> {
        self.start_background();
        self.inner.hub.changes()
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
