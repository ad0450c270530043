//! The native addon of the `inloop` npm package.
//!
//! Thin by design, like the Python binding: JSON text in and out, every rule in the core.
//! napi's async functions cannot reject with a custom error type, so a core error rejects
//! with an `Error` whose message is JSON `{"code", "message", "details"}`; the TypeScript
//! layer turns it into the matching `InloopError` subclass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inloop_core::config::Target;
use inloop_core::{Answer, AnyEngine, Engine as CoreEngine, EngineOptions, ListFilter, NewTask};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio::sync::oneshot;
use uuid::Uuid;

fn to_js(e: inloop_core::Error) -> Error {
    let body = serde_json::json!({
        "code": e.code(),
        "message": e.to_string(),
        "details": e.details(),
    });
    Error::from_reason(body.to_string())
}

fn bad_input(message: String) -> Error {
    to_js(inloop_core::Error::InvalidArgument(message))
}

fn aborted() -> Error {
    let body = serde_json::json!({
        "code": "aborted",
        "message": "the wait was aborted; the task is unchanged",
        "details": {},
    });
    Error::from_reason(body.to_string())
}

fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|_| bad_input(format!("{id:?} is not a task id")))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::from_reason(e.to_string()))
}

/// An abort handle's state: a wait is running on it, or `abort` came first (the wait that
/// registers it later rejects at once: no lost abort, whatever the order).
enum AbortSlot {
    Waiting(oneshot::Sender<()>),
    Aborted,
}

/// An open database, or an inloop server (remote mode). Methods take and return JSON text;
/// the `Client` class wraps them.
#[napi]
pub struct Engine {
    engine: AnyEngine,
    url: String,
    /// Waits that JavaScript may abort (an `AbortSignal`), by handle.
    aborts: Arc<Mutex<HashMap<u32, AbortSlot>>>,
    next_abort: AtomicU32,
}

impl Engine {
    /// Runs `fut`, unless `handle` is aborted first (then rejects with code `aborted`; the
    /// future is dropped, which the core guarantees leaves the task unchanged).
    async fn abortable<T>(
        &self,
        handle: Option<u32>,
        fut: impl std::future::Future<Output = inloop_core::Result<T>>,
    ) -> Result<T> {
        let Some(handle) = handle else {
            return fut.await.map_err(to_js);
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut aborts = self.aborts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(AbortSlot::Aborted) = aborts.remove(&handle) {
                return Err(aborted());
            }
            aborts.insert(handle, AbortSlot::Waiting(tx));
        }
        let out = tokio::select! {
            r = fut => r.map_err(to_js),
            _ = rx => Err(aborted()),
        };
        self.aborts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle);
        out
    }
}

#[napi]
impl Engine {
    /// Opens what the configuration names (the core's rule: `remoteUrl` (a server) > `url`
    /// (a database) > `INLOOP_URL` with `INLOOP_API_KEY` > `INLOOP_DATABASE_URL` > the
    /// SQLite file `.inloop/inloop.db` under the current directory). A database is opened
    /// and migrated; a server is contacted on first use.
    #[napi(factory)]
    pub async fn open(
        url: Option<String>,
        remote_url: Option<String>,
        api_key: Option<String>,
    ) -> Result<Engine> {
        let target = inloop_core::config::resolve_target(
            url.as_deref(),
            remote_url.as_deref(),
            api_key.as_deref(),
        )
        .map_err(to_js)?;
        let (engine, url) = match target {
            Target::Database(url) => {
                let engine = CoreEngine::open(&url, EngineOptions::default())
                    .await
                    .map_err(to_js)?;
                (AnyEngine::Local(engine), url)
            }
            Target::Remote { url, api_key } => {
                let remote = inloop_core::RemoteEngine::new(&url, &api_key).map_err(to_js)?;
                (AnyEngine::Remote(remote), url)
            }
        };
        Ok(Engine {
            engine,
            url: inloop_core::store::redact_url(&url),
            aborts: Arc::default(),
            next_abort: AtomicU32::new(1),
        })
    }

    /// The database URL (password redacted), or the server URL in remote mode.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `"sqlite"`, `"postgres"` or `"remote"`.
    #[napi(getter)]
    pub fn backend(&self) -> String {
        self.engine.backend_name().into()
    }

    /// A handle to pass to `ask`/`wait`, and to `abort` to stop that wait.
    #[napi]
    pub fn abort_handle(&self) -> u32 {
        self.next_abort.fetch_add(1, Ordering::Relaxed)
    }

    /// Stops the wait using `handle`, even one that has not started yet (no-op when it
    /// already ended). The task is unchanged.
    #[napi]
    pub fn abort(&self, handle: u32) {
        let mut aborts = self.aborts.lock().unwrap_or_else(|p| p.into_inner());
        match aborts.remove(&handle) {
            Some(AbortSlot::Waiting(tx)) => {
                let _ = tx.send(());
            }
            // Not started yet: remember, so the wait rejects as soon as it registers.
            Some(AbortSlot::Aborted) | None => {
                aborts.insert(handle, AbortSlot::Aborted);
            }
        }
    }

    /// Creates or gets a task; `request` is a NewTask as JSON; resolves to `{task, created}`.
    #[napi]
    pub async fn create(&self, request: String) -> Result<String> {
        let new: NewTask = serde_json::from_str(&request)
            .map_err(|e| bad_input(format!("bad create request: {e}")))?;
        json(&self.engine.create(new).await.map_err(to_js)?)
    }

    /// Creates or gets the task and waits for its outcome (what `awaitHuman` does).
    #[napi]
    pub async fn ask(&self, request: String, abort: Option<u32>) -> Result<String> {
        let new: NewTask = serde_json::from_str(&request)
            .map_err(|e| bad_input(format!("bad create request: {e}")))?;
        json(&self.abortable(abort, self.engine.ask(new)).await?)
    }

    #[napi]
    pub async fn get(&self, id: String) -> Result<String> {
        let id = parse_id(&id)?;
        json(&self.engine.get(id).await.map_err(to_js)?)
    }

    #[napi]
    pub async fn get_by_key(&self, namespace: String, key: String) -> Result<String> {
        json(
            &self
                .engine
                .get_by_key(&namespace, &key)
                .await
                .map_err(to_js)?,
        )
    }

    #[napi]
    pub async fn list(&self, filter: String) -> Result<String> {
        let filter: ListFilter = serde_json::from_str(&filter)
            .map_err(|e| bad_input(format!("bad list filter: {e}")))?;
        json(&self.engine.list(filter).await.map_err(to_js)?)
    }

    #[napi]
    pub async fn answer(
        &self,
        id: String,
        response: String,
        by: String,
        channel: String,
    ) -> Result<String> {
        let id = parse_id(&id)?;
        let response = serde_json::from_str(&response)
            .map_err(|e| bad_input(format!("the answer is not valid JSON: {e}")))?;
        let a = Answer {
            response,
            by,
            channel,
        };
        json(&self.engine.answer(id, a).await.map_err(to_js)?)
    }

    /// Records the agent's own verifier's verdict on the completed task (`verdict` is an
    /// `AgentVerdict` as JSON); resolves to the task after it as JSON.
    #[napi]
    pub async fn submit_verdict(&self, id: String, verdict: String) -> Result<String> {
        let id = parse_id(&id)?;
        let v: inloop_core::engine::AgentVerdict =
            serde_json::from_str(&verdict).map_err(|e| bad_input(format!("bad verdict: {e}")))?;
        json(&self.engine.submit_verdict(id, v).await.map_err(to_js)?)
    }

    #[napi]
    pub async fn cancel(
        &self,
        id: String,
        by: String,
        channel: String,
        reason: Option<String>,
    ) -> Result<String> {
        let id = parse_id(&id)?;
        let t = self
            .engine
            .cancel(id, &by, &channel, reason.as_deref())
            .await;
        json(&t.map_err(to_js)?)
    }

    /// Waits until the task ends or `timeoutMs` passes; resolves to the task as JSON.
    #[napi]
    pub async fn wait(
        &self,
        id: String,
        timeout_ms: Option<f64>,
        abort: Option<u32>,
    ) -> Result<String> {
        let id = parse_id(&id)?;
        let limit = match timeout_ms {
            Some(t) if !(t.is_finite() && t >= 0.0) => {
                return Err(bad_input(format!(
                    "timeout must be a non-negative number of ms, not {t}"
                )));
            }
            Some(t) => Some(Duration::from_secs_f64(t.min(1e12) / 1000.0)),
            None => None,
        };
        json(&self.abortable(abort, self.engine.wait(id, limit)).await?)
    }

    /// Waits for the outcome: the completed task as JSON, or rejects with `timed_out` /
    /// `cancelled`.
    #[napi]
    pub async fn await_response(&self, id: String, abort: Option<u32>) -> Result<String> {
        let id = parse_id(&id)?;
        json(
            &self
                .abortable(abort, self.engine.await_response(id))
                .await?,
        )
    }

    #[napi]
    pub async fn audit(&self, id: String) -> Result<String> {
        let id = parse_id(&id)?;
        json(&self.engine.audit(id).await.map_err(to_js)?)
    }

    #[napi]
    pub async fn verify_audit(&self, id: String) -> Result<String> {
        let id = parse_id(&id)?;
        json(&self.engine.verify_audit(id).await.map_err(to_js)?)
    }

    /// Begins the effect `(namespace, key)` for the attempt holding `token` (generated when
    /// absent): resolves to `{"outcome": "run", token, attempt}` or `{"outcome": "done",
    /// result, finished_at}` as JSON; rejects with `effect_in_doubt` when another attempt
    /// never finished.
    #[napi]
    pub async fn effect_begin(
        &self,
        namespace: String,
        key: String,
        token: Option<String>,
        by: Option<String>,
    ) -> Result<String> {
        let b = self
            .engine
            .effect_begin(&namespace, &key, token.as_deref(), by.as_deref())
            .await;
        json(&b.map_err(to_js)?)
    }

    /// Records the attempt's result (`result` is JSON text); resolves to the effect as JSON.
    #[napi]
    pub async fn effect_finish(
        &self,
        namespace: String,
        key: String,
        token: String,
        result: String,
    ) -> Result<String> {
        let result = serde_json::from_str(&result)
            .map_err(|e| bad_input(format!("the result is not valid JSON: {e}")))?;
        let e = self
            .engine
            .effect_finish(&namespace, &key, &token, result)
            .await;
        json(&e.map_err(to_js)?)
    }

    /// Releases the attempt after its function threw; resolves to the effect as JSON.
    #[napi]
    pub async fn effect_abort(
        &self,
        namespace: String,
        key: String,
        token: String,
        error: Option<String>,
    ) -> Result<String> {
        let e = self
            .engine
            .effect_abort(&namespace, &key, &token, error.as_deref())
            .await;
        json(&e.map_err(to_js)?)
    }

    /// Resolves an effect in doubt (`resolution` is a `Resolve` as JSON: `action`, `result`,
    /// `attempt`, `note`, `by`); resolves to the effect as JSON.
    #[napi]
    pub async fn effect_resolve(
        &self,
        namespace: String,
        key: String,
        resolution: String,
    ) -> Result<String> {
        let r: inloop_core::effects::Resolve = serde_json::from_str(&resolution)
            .map_err(|e| bad_input(format!("bad resolution: {e}")))?;
        let e = self.engine.effect_resolve(&namespace, &key, r).await;
        json(&e.map_err(to_js)?)
    }

    /// The effect as JSON (rejects with `not_found` when there is none).
    #[napi]
    pub async fn effect(&self, namespace: String, key: String) -> Result<String> {
        json(&self.engine.effect(&namespace, &key).await.map_err(to_js)?)
    }

    /// Effects matching `filter` (an `EffectFilter` as JSON), oldest first, as a JSON list.
    #[napi]
    pub async fn effects(&self, filter: String) -> Result<String> {
        let filter: inloop_core::effects::EffectFilter = serde_json::from_str(&filter)
            .map_err(|e| bad_input(format!("bad effect filter: {e}")))?;
        json(&self.engine.effects(filter).await.map_err(to_js)?)
    }

    /// The effect's audit trail as a JSON list, oldest first.
    #[napi]
    pub async fn effect_audit(&self, namespace: String, key: String) -> Result<String> {
        json(
            &self
                .engine
                .effect_audit(&namespace, &key)
                .await
                .map_err(to_js)?,
        )
    }

    #[napi]
    pub async fn close(&self) -> Result<()> {
        self.engine.close().await;
        Ok(())
    }

    /// How many waiters of this process are parked until a wake (always 0 in remote mode:
    /// they wait on the server).
    #[napi]
    pub fn parked(&self) -> u32 {
        self.engine.parked() as u32
    }
}

/// Checks a signed webhook request from `inloop serve` (Standard Webhooks: `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`); throws (code `unauthorized`) when it does not
/// verify, `invalid_argument` for a secret that is not `whsec_...`.
#[napi]
pub fn verify_webhook(
    secret: String,
    id: String,
    timestamp: String,
    signature: String,
    body: Buffer,
    tolerance_secs: Option<i64>,
) -> Result<()> {
    inloop_core::channels::webhook::verify_now(
        &secret,
        &id,
        &timestamp,
        &body,
        &signature,
        tolerance_secs.unwrap_or(300),
    )
    .map_err(to_js)
}

fn digest_inputs(
    task: &str,
    payload: &str,
) -> Result<(inloop_core::schema::DigestParts, serde_json::Value)> {
    let parts = serde_json::from_str(task).map_err(|e| {
        bad_input(format!(
            "the task must be JSON with title, response_schema (and payload_schema, verification, digest): {e}"
        ))
    })?;
    let payload = serde_json::from_str(payload)
        .map_err(|e| bad_input(format!("the payload is not valid JSON: {e}")))?;
    Ok((parts, payload))
}

/// The digest `task` (its JSON: title, schemas, verification) would have with `payload`
/// (JSON text).
#[napi]
pub fn task_digest(task: String, payload: String) -> Result<String> {
    let (parts, payload) = digest_inputs(&task, &payload)?;
    Ok(parts.digest_with(&payload))
}

/// Throws (code `digest_mismatch`) unless `payload` (JSON text) gives the digest of `task`
/// (its JSON, with `digest`): what the agent is about to do is what was approved.
#[napi]
pub fn verify_digest(task: String, payload: String) -> Result<()> {
    let (parts, payload) = digest_inputs(&task, &payload)?;
    parts.verify(&payload).map_err(to_js)
}

/// The database URL by the configuration rule (explicit > `INLOOP_DATABASE_URL` > default).
#[napi]
pub fn resolve_database_url(explicit: Option<String>) -> Result<String> {
    inloop_core::config::resolve_database_url(explicit.as_deref()).map_err(to_js)
}

/// What the configuration names (the same rule as `Engine.open`).
#[napi(object)]
pub struct ResolvedTarget {
    /// `"database"` or `"remote"`.
    pub kind: String,
    /// The database URL or the server URL, password redacted.
    pub url: String,
}

/// What the configuration names: `{kind: "remote", url}` (a server) or
/// `{kind: "database", url}`; rejects with `config` (e.g. `INLOOP_URL` without a key).
#[napi]
pub fn resolve_target(
    url: Option<String>,
    remote_url: Option<String>,
    api_key: Option<String>,
) -> Result<ResolvedTarget> {
    let target = inloop_core::config::resolve_target(
        url.as_deref(),
        remote_url.as_deref(),
        api_key.as_deref(),
    )
    .map_err(to_js)?;
    Ok(match target {
        Target::Database(u) => ResolvedTarget {
            kind: "database".into(),
            url: inloop_core::store::redact_url(&u),
        },
        Target::Remote { url, .. } => ResolvedTarget {
            kind: "remote".into(),
            url: inloop_core::store::redact_url(&url),
        },
    })
}

/// Starts exporting traces of the tasks this process touches when the `OTEL_*` variables ask
/// for it (`OTEL_EXPORTER_OTLP_ENDPOINT` ...); returns whether it did. A setting inloop cannot
/// honour is an error naming it. The TypeScript layer calls it once when the addon loads.
#[napi]
pub fn telemetry_init() -> Result<bool> {
    inloop_core::telemetry::init_from_env("inloop").map_err(napi::Error::from_reason)
}

/// Sends the spans not yet exported and stops the exporter (at process exit).
#[napi]
pub fn telemetry_shutdown() {
    inloop_core::telemetry::shutdown();
}
