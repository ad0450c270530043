//! [`AnyEngine`]: a local [`Engine`] or a [`RemoteEngine`], chosen by one configuration rule
//! ([`config::resolve_target`]), with the same methods, so the SDKs do not care which.

use std::time::Duration;

use uuid::Uuid;

use crate::access::Principal;
use crate::audit::ChainCheck;
use crate::config::{self, Target};
use crate::effects::{Begin, Effect, EffectEvent, EffectFilter, Resolve};
use crate::engine::{Engine, EngineOptions};
use crate::error::Result;
use crate::model::{Answer, AuditEvent, Created, ListFilter, NewTask, Page, Task};
use crate::remote::RemoteEngine;
use crate::store::Backend;

/// A database opened here, or an inloop server reached over HTTP.
///
/// ```no_run
/// # async fn demo() -> inloop_core::Result<()> {
/// use inloop_core::AnyEngine;
/// // INLOOP_URL + INLOOP_API_KEY set: remote; else INLOOP_DATABASE_URL or the SQLite default.
/// let engine = AnyEngine::open(None, None, None).await?;
/// println!("{} {:?}", engine.backend_name(), engine.url());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub enum AnyEngine {
    Local(Engine),
    Remote(RemoteEngine),
}

macro_rules! dispatch {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Local($e) => $call,
            AnyEngine::Remote($e) => $call,
        }
    };
}

impl AnyEngine {
    /// Opens what the configuration names: an explicit server `url` (with `api_key` or
    /// `INLOOP_API_KEY`), else an explicit `database_url`, else `INLOOP_URL` (with
    /// `INLOOP_API_KEY`, required), else `INLOOP_DATABASE_URL`, else the default SQLite file.
    /// A database is opened and migrated here; a server is contacted on first use.
    pub async fn open(
        database_url: Option<&str>,
        url: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<AnyEngine> {
        match config::resolve_target(database_url, url, api_key)? {
            Target::Database(u) => Ok(AnyEngine::Local(
                Engine::open(&u, EngineOptions::default()).await?,
            )),
            Target::Remote { url, api_key } => {
                Ok(AnyEngine::Remote(RemoteEngine::new(&url, &api_key)?))
            }
        }
    }

    /// `"sqlite"`, `"postgres"` or `"remote"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            AnyEngine::Local(e) => match e.backend() {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            },
            AnyEngine::Remote(_) => "remote",
        }
    }

    /// The server URL, for a remote engine; `None` for a local one.
    pub fn url(&self) -> Option<String> {
        match self {
            AnyEngine::Local(_) => None,
            AnyEngine::Remote(r) => Some(r.url()),
        }
    }

    pub async fn create(&self, new: NewTask) -> Result<Created> {
        dispatch!(self, e => e.create(new).await)
    }

    pub async fn get(&self, id: Uuid) -> Result<Task> {
        dispatch!(self, e => e.get(id).await)
    }

    pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Task> {
        dispatch!(self, e => e.get_by_key(namespace, key).await)
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Page> {
        dispatch!(self, e => e.list(filter).await)
    }

    pub async fn answer(&self, id: Uuid, answer: Answer) -> Result<Task> {
        dispatch!(self, e => e.answer(id, answer).await)
    }

    /// Records the agent's own verifier's verdict ([`crate::Engine::submit_verdict`]).
    pub async fn submit_verdict(
        &self,
        id: Uuid,
        verdict: crate::engine::AgentVerdict,
    ) -> Result<Task> {
        dispatch!(self, e => e.submit_verdict(id, verdict).await)
    }

    pub async fn cancel(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        reason: Option<&str>,
    ) -> Result<Task> {
        dispatch!(self, e => e.cancel(id, by, channel, reason).await)
    }

    pub async fn wait(&self, id: Uuid, limit: Option<Duration>) -> Result<Task> {
        dispatch!(self, e => e.wait(id, limit).await)
    }

    pub async fn await_response(&self, id: Uuid) -> Result<Task> {
        dispatch!(self, e => e.await_response(id).await)
    }

    pub async fn ask(&self, new: NewTask) -> Result<Task> {
        dispatch!(self, e => e.ask(new).await)
    }

    pub async fn audit(&self, id: Uuid) -> Result<Vec<AuditEvent>> {
        dispatch!(self, e => e.audit(id).await)
    }

    pub async fn verify_audit(&self, id: Uuid) -> Result<ChainCheck> {
        dispatch!(self, e => e.verify_audit(id).await)
    }

    /// Begins the effect ([`crate::Engine::effect_begin`]).
    pub async fn effect_begin(
        &self,
        namespace: &str,
        key: &str,
        token: Option<&str>,
        by: Option<&str>,
    ) -> Result<Begin> {
        match self {
            AnyEngine::Local(e) => {
                e.effect_begin(namespace, key, token, by, &Principal::Trusted)
                    .await
            }
            AnyEngine::Remote(r) => r.effect_begin(namespace, key, token, by).await,
        }
    }

    /// Records the attempt's result ([`crate::Engine::effect_finish`]).
    pub async fn effect_finish(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        result: serde_json::Value,
    ) -> Result<Effect> {
        match self {
            AnyEngine::Local(e) => {
                e.effect_finish(namespace, key, token, result, &Principal::Trusted)
                    .await
            }
            AnyEngine::Remote(r) => r.effect_finish(namespace, key, token, result).await,
        }
    }

    /// Releases the attempt after a failure ([`crate::Engine::effect_abort`]).
    pub async fn effect_abort(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        error: Option<&str>,
    ) -> Result<Effect> {
        match self {
            AnyEngine::Local(e) => {
                e.effect_abort(namespace, key, token, error, &Principal::Trusted)
                    .await
            }
            AnyEngine::Remote(r) => r.effect_abort(namespace, key, token, error).await,
        }
    }

    /// Resolves an effect in doubt ([`crate::Engine::effect_resolve`]).
    pub async fn effect_resolve(&self, namespace: &str, key: &str, r: Resolve) -> Result<Effect> {
        match self {
            AnyEngine::Local(e) => {
                e.effect_resolve(namespace, key, r, &Principal::Trusted)
                    .await
            }
            AnyEngine::Remote(rem) => rem.effect_resolve(namespace, key, r).await,
        }
    }

    pub async fn effect(&self, namespace: &str, key: &str) -> Result<Effect> {
        match self {
            AnyEngine::Local(e) => e.effect(namespace, key, &Principal::Trusted).await,
            AnyEngine::Remote(r) => r.effect(namespace, key).await,
        }
    }

    pub async fn effects(&self, filter: EffectFilter) -> Result<Vec<Effect>> {
        match self {
            AnyEngine::Local(e) => e.effects(filter, &Principal::Trusted).await,
            AnyEngine::Remote(r) => r.effects(filter).await,
        }
    }

    pub async fn effect_audit(&self, namespace: &str, key: &str) -> Result<Vec<EffectEvent>> {
        match self {
            AnyEngine::Local(e) => e.effect_audit(namespace, key, &Principal::Trusted).await,
            AnyEngine::Remote(r) => r.effect_audit(namespace, key).await,
        }
    }

    /// Closes a database's connections (nothing to do for a server).
    pub async fn close(&self) {
        if let AnyEngine::Local(e) = self {
            e.close().await;
        }
    }

    /// Waiters parked in this process (always 0 for a server: they wait there).
    pub fn parked(&self) -> usize {
        match self {
            AnyEngine::Local(e) => e.parked(),
            AnyEngine::Remote(_) => 0,
        }
    }
}
