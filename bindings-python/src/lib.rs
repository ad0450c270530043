//! `inloop._native`: the Python binding of inloop-core.
//!
//! Thin by design: it converts (JSON text in and out, errors to `inloop.errors` classes) and
//! hands futures to asyncio. Every rule lives in the core. The tokio runtime is owned here and
//! shut down from an `atexit` hook with the GIL released, so interpreter exit never races a
//! worker thread (see NOTES.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use inloop_core::config::Target;
use inloop_core::{Answer, AnyEngine, Engine as CoreEngine, EngineOptions, ListFilter, NewTask};
use once_cell::unsync::OnceCell;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime};
use uuid::Uuid;

static RUNTIME: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);
static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();

fn handle() -> &'static tokio::runtime::Handle {
    HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("inloop-worker")
            .enable_all()
            .build()
            .expect("inloop: cannot start the tokio runtime");
        let h = rt.handle().clone();
        *RUNTIME.lock().unwrap_or_else(|p| p.into_inner()) = Some(rt);
        h
    })
}

/// The runtime pyo3-async-runtimes drives: ours.
struct OwnedRuntime;

struct Join(tokio::task::JoinError);

impl JoinError for Join {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl Runtime for OwnedRuntime {
    type JoinError = Join;
    type JoinHandle = Pin<Box<dyn Future<Output = Result<(), Join>> + Send>>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = handle().spawn(fut);
        Box::pin(async move { h.await.map_err(Join) })
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let h = handle().spawn_blocking(f);
        Box::pin(async move { h.await.map_err(Join) })
    }
}

impl ContextExt for OwnedRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

fn future<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<OwnedRuntime, _, _>(py, fut)
}

/// Raises the `inloop.errors` class for the core error's code.
fn to_py(e: inloop_core::Error) -> PyErr {
    let code = e.code();
    let message = e.to_string();
    let details = e.details().to_string();
    Python::attach(|py| {
        let built = py
            .import("inloop.errors")
            .and_then(|m| m.getattr("_from_native"))
            .and_then(|f| f.call1((code, &message, &details)));
        match built {
            Ok(exc) => PyErr::from_value(exc),
            Err(_) => PyRuntimeError::new_err(format!("[{code}] {message}")),
        }
    })
}

fn bad_input(message: String) -> PyErr {
    to_py(inloop_core::Error::InvalidArgument(message))
}

fn parse_id(id: &str) -> PyResult<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|_| bad_input(format!("{id:?} is not a task id")))
}

fn json<T: serde::Serialize>(v: &T) -> PyResult<String> {
    serde_json::to_string(v).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// An open database, or an inloop server (remote mode). Methods take and return JSON text;
/// `inloop.Client` wraps them.
#[pyclass(module = "inloop._native", frozen)]
struct Engine {
    engine: AnyEngine,
    url: String,
}

#[pymethods]
impl Engine {
    /// Opens what the configuration names (the core's rule: `remote_url` > `url` (a database)
    /// > `INLOOP_URL` with `INLOOP_API_KEY` > `INLOOP_DATABASE_URL` > the default SQLite file).
    /// A database is opened and migrated; a server is contacted on first use.
    #[staticmethod]
    #[pyo3(signature = (url=None, remote_url=None, api_key=None))]
    fn open(
        py: Python<'_>,
        url: Option<String>,
        remote_url: Option<String>,
        api_key: Option<String>,
    ) -> PyResult<Bound<'_, PyAny>> {
        let target = inloop_core::config::resolve_target(
            url.as_deref(),
            remote_url.as_deref(),
            api_key.as_deref(),
        )
        .map_err(to_py)?;
        future(py, async move {
            match target {
                Target::Database(url) => {
                    let engine = CoreEngine::open(&url, EngineOptions::default())
                        .await
                        .map_err(to_py)?;
                    Ok(Engine {
                        engine: AnyEngine::Local(engine),
                        url: inloop_core::store::redact_url(&url),
                    })
                }
                Target::Remote { url, api_key } => {
                    let remote = inloop_core::RemoteEngine::new(&url, &api_key).map_err(to_py)?;
                    Ok(Engine {
                        url: inloop_core::store::redact_url(&url),
                        engine: AnyEngine::Remote(remote),
                    })
                }
            }
        })
    }

    /// The database URL (password redacted), or the server URL in remote mode.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// `"sqlite"`, `"postgres"` or `"remote"`.
    #[getter]
    fn backend(&self) -> &'static str {
        self.engine.backend_name()
    }

    /// Creates or gets a task; `request` is a `NewTask` as JSON; returns a `Created` as JSON.
    fn create<'py>(&self, py: Python<'py>, request: &str) -> PyResult<Bound<'py, PyAny>> {
        let new: NewTask = serde_json::from_str(request)
            .map_err(|e| bad_input(format!("bad create request: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.create(new).await.map_err(to_py)?)
        })
    }

    /// Creates or gets the task and waits for its outcome (what `await_human` does): the
    /// completed task as JSON, or raises `TimedOut` / `Cancelled` / `KeyReused` ...
    fn ask<'py>(&self, py: Python<'py>, request: &str) -> PyResult<Bound<'py, PyAny>> {
        let new: NewTask = serde_json::from_str(request)
            .map_err(|e| bad_input(format!("bad create request: {e}")))?;
        let engine = self.engine.clone();
        future(
            py,
            async move { json(&engine.ask(new).await.map_err(to_py)?) },
        )
    }

    fn get<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let engine = self.engine.clone();
        future(
            py,
            async move { json(&engine.get(id).await.map_err(to_py)?) },
        )
    }

    fn get_by_key<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.get_by_key(&namespace, &key).await.map_err(to_py)?)
        })
    }

    fn list<'py>(&self, py: Python<'py>, filter: &str) -> PyResult<Bound<'py, PyAny>> {
        let filter: ListFilter =
            serde_json::from_str(filter).map_err(|e| bad_input(format!("bad list filter: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.list(filter).await.map_err(to_py)?)
        })
    }

    fn answer<'py>(
        &self,
        py: Python<'py>,
        id: &str,
        response: &str,
        by: String,
        channel: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let response = serde_json::from_str(response)
            .map_err(|e| bad_input(format!("the answer is not valid JSON: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            let a = Answer {
                response,
                by,
                channel,
            };
            json(&engine.answer(id, a).await.map_err(to_py)?)
        })
    }

    /// Records the agent's own verifier's verdict on the completed task; `verdict` is an
    /// `AgentVerdict` as JSON; returns the task after it as JSON (raises
    /// `VerificationExhausted` when a rejection used the last attempt).
    fn submit_verdict<'py>(
        &self,
        py: Python<'py>,
        id: &str,
        verdict: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let v: inloop_core::engine::AgentVerdict =
            serde_json::from_str(verdict).map_err(|e| bad_input(format!("bad verdict: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.submit_verdict(id, v).await.map_err(to_py)?)
        })
    }

    #[pyo3(signature = (id, by, channel, reason=None))]
    fn cancel<'py>(
        &self,
        py: Python<'py>,
        id: &str,
        by: String,
        channel: String,
        reason: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let engine = self.engine.clone();
        future(py, async move {
            let t = engine.cancel(id, &by, &channel, reason.as_deref()).await;
            json(&t.map_err(to_py)?)
        })
    }

    /// Waits until the task ends or `timeout` seconds pass; returns the task as JSON.
    #[pyo3(signature = (id, timeout=None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        id: &str,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let limit = match timeout {
            Some(t) if !(t.is_finite() && t >= 0.0) => {
                return Err(bad_input(format!(
                    "timeout must be a non-negative number, not {t}"
                )));
            }
            Some(t) => Some(Duration::from_secs_f64(t.min(1e9))),
            None => None,
        };
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.wait(id, limit).await.map_err(to_py)?)
        })
    }

    /// Waits for the task's outcome: the completed task as JSON, or raises `TimedOut` /
    /// `Cancelled`.
    fn await_response<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.await_response(id).await.map_err(to_py)?)
        })
    }

    fn audit<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let engine = self.engine.clone();
        future(
            py,
            async move { json(&engine.audit(id).await.map_err(to_py)?) },
        )
    }

    fn verify_audit<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = parse_id(id)?;
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.verify_audit(id).await.map_err(to_py)?)
        })
    }

    /// Begins the effect `(namespace, key)` for the attempt holding `token` (generated when
    /// `None`): `{"outcome": "run", "token", "attempt"}` or `{"outcome": "done", "result",
    /// "finished_at"}` as JSON; raises `EffectInDoubt` when another attempt never finished.
    #[pyo3(signature = (namespace, key, token=None, by=None))]
    fn effect_begin<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
        token: Option<String>,
        by: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future(py, async move {
            let b = engine
                .effect_begin(&namespace, &key, token.as_deref(), by.as_deref())
                .await;
            json(&b.map_err(to_py)?)
        })
    }

    /// Records the attempt's result (`result` is JSON text); returns the effect as JSON.
    fn effect_finish<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
        token: String,
        result: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let result = serde_json::from_str(result)
            .map_err(|e| bad_input(format!("the result is not valid JSON: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            let e = engine.effect_finish(&namespace, &key, &token, result).await;
            json(&e.map_err(to_py)?)
        })
    }

    /// Releases the attempt after its function raised; returns the effect as JSON.
    #[pyo3(signature = (namespace, key, token, error=None))]
    fn effect_abort<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
        token: String,
        error: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future(py, async move {
            let e = engine
                .effect_abort(&namespace, &key, &token, error.as_deref())
                .await;
            json(&e.map_err(to_py)?)
        })
    }

    /// Resolves an effect in doubt; `resolution` is a `Resolve` as JSON (`action`, `result`,
    /// `attempt`, `note`, `by`); returns the effect as JSON.
    fn effect_resolve<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
        resolution: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r: inloop_core::effects::Resolve = serde_json::from_str(resolution)
            .map_err(|e| bad_input(format!("bad resolution: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            json(
                &engine
                    .effect_resolve(&namespace, &key, r)
                    .await
                    .map_err(to_py)?,
            )
        })
    }

    /// The effect as JSON (`NotFound` when there is none).
    fn effect<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.effect(&namespace, &key).await.map_err(to_py)?)
        })
    }

    /// Effects matching `filter` (an `EffectFilter` as JSON), oldest first, as a JSON list.
    fn effects<'py>(&self, py: Python<'py>, filter: &str) -> PyResult<Bound<'py, PyAny>> {
        let filter: inloop_core::effects::EffectFilter = serde_json::from_str(filter)
            .map_err(|e| bad_input(format!("bad effect filter: {e}")))?;
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.effects(filter).await.map_err(to_py)?)
        })
    }

    /// The effect's audit trail as a JSON list, oldest first.
    fn effect_audit<'py>(
        &self,
        py: Python<'py>,
        namespace: String,
        key: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future(py, async move {
            json(&engine.effect_audit(&namespace, &key).await.map_err(to_py)?)
        })
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        future(py, async move {
            engine.close().await;
            Ok(())
        })
    }

    /// How many waiters are parked in this process (0 in remote mode: they wait on the server).
    fn parked(&self) -> usize {
        self.engine.parked()
    }
}

/// The database URL by the configuration rule (explicit > `INLOOP_DATABASE_URL` > default).
#[pyfunction]
#[pyo3(signature = (explicit=None))]
fn resolve_database_url(explicit: Option<&str>) -> PyResult<String> {
    inloop_core::config::resolve_database_url(explicit).map_err(to_py)
}

/// What the configuration names, as `("remote", server_url)` or `("database", url)` (the URL
/// with its password redacted); raises `ConfigError` (e.g. `INLOOP_URL` without a key).
#[pyfunction]
#[pyo3(signature = (url=None, remote_url=None, api_key=None))]
fn resolve_target(
    url: Option<&str>,
    remote_url: Option<&str>,
    api_key: Option<&str>,
) -> PyResult<(&'static str, String)> {
    match inloop_core::config::resolve_target(url, remote_url, api_key).map_err(to_py)? {
        Target::Database(u) => Ok(("database", inloop_core::store::redact_url(&u))),
        Target::Remote { url, .. } => Ok(("remote", inloop_core::store::redact_url(&url))),
    }
}

/// Checks a signed webhook request from `inloop serve` (Standard Webhooks: `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`); raises `InloopError` with code `unauthorized`
/// when it does not verify, `InvalidArgument` for a secret that is not `whsec_...`.
#[pyfunction]
#[pyo3(signature = (secret, id, timestamp, signature, body, tolerance_secs=300))]
fn verify_webhook(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    tolerance_secs: i64,
) -> PyResult<()> {
    inloop_core::channels::webhook::verify_now(
        secret,
        id,
        timestamp,
        body,
        signature,
        tolerance_secs,
    )
    .map_err(to_py)
}

fn digest_inputs(
    task: &str,
    payload: &str,
) -> PyResult<(inloop_core::schema::DigestParts, serde_json::Value)> {
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
#[pyfunction]
fn task_digest(task: &str, payload: &str) -> PyResult<String> {
    let (parts, payload) = digest_inputs(task, payload)?;
    Ok(parts.digest_with(&payload))
}

/// Raises `DigestMismatch` unless `payload` (JSON text) gives the digest of `task` (its JSON,
/// with `digest`): what the agent is about to do is what was approved.
#[pyfunction]
fn verify_digest(task: &str, payload: &str) -> PyResult<()> {
    let (parts, payload) = digest_inputs(task, payload)?;
    parts.verify(&payload).map_err(to_py)
}

/// Runs the `inloop` command line with `argv`; returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| inloop_core::cli::main_with_args(argv))
}

/// Stops the runtime (called at interpreter exit). Pending native work is dropped.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    // The last spans are sent before the runtime stops (a no-op when tracing is off).
    py.detach(inloop_core::telemetry::shutdown);
    let rt = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rt) = rt {
        py.detach(|| rt.shutdown_timeout(Duration::from_secs(2)));
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(resolve_database_url, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_target, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(verify_webhook, m)?)?;
    m.add_function(wrap_pyfunction!(task_digest, m)?)?;
    m.add_function(wrap_pyfunction!(verify_digest, m)?)?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let py = m.py();
    // The embedded engine traces the tasks it touches when the OTEL_* variables ask for it. A
    // setting inloop cannot honour (say a gRPC protocol meant for another exporter) warns and
    // leaves tracing off rather than failing the import.
    if let Err(e) = inloop_core::telemetry::init_from_env("inloop") {
        let warning = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
        PyErr::warn(
            py,
            &warning,
            &std::ffi::CString::new(format!("inloop: tracing is off: {e}")).unwrap_or_default(),
            1,
        )?;
    }
    let shutdown = m.getattr("_shutdown")?;
    py.import("atexit")?.call_method1("register", (shutdown,))?;
    Ok(())
}
