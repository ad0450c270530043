//! Remote mode: the engine's API over the REST API of `inloop serve` (`docs/api.md`).
//!
//! [`RemoteEngine`] has the methods of [`Engine`](crate::Engine) and returns the same types
//! and [`Error`]s: the server's `{"error": {code, message, details}}` is turned back into the
//! core variant it came from (or [`Error::Remote`] for a code the core has no variant for).
//!
//! Resilience: a refused connection (the request never left) is retried for every call. A
//! reset, a timeout or an HTTP 502/503/504 is retried only for idempotent calls (`get`,
//! `list`, `audit`, the long polls, and `create`, which always carries an idempotency key: one
//! is generated here when the caller gave none, before the first attempt). Retries back off
//! from 50 ms, doubling up to 2 s; waits retry for as long as they wait (a server restart
//! never ends a wait), other calls for up to 30 s. Any other HTTP error is returned at once.
//!
//! Connections: HTTP/2 when the server speaks it (`inloop serve` does, without TLS too), so a
//! process's calls and long polls share one connection; HTTP/1.1 otherwise (`transport.rs`).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::{self, ChainCheck};
use crate::error::{Error, FieldError, Result};
use crate::model::{
    Answer, AuditEvent, Created, ListFilter, NewTask, Page, Status, Task, parse_rfc3339,
};
use crate::rules;

mod transport;

/// The longest single long poll (the server caps `timeout_ms` at 60 s; proxies often cut
/// idle requests at 30 s or more).
pub const MAX_POLL: Duration = Duration::from_secs(25);
/// How long a call other than a wait keeps retrying a transient failure.
pub const RETRY_FOR: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Time allowed for one ordinary request (and added to a long poll's own limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of an inloop server. Cheap to clone; clones share connections.
///
/// ```no_run
/// # async fn demo() -> inloop_core::Result<()> {
/// use inloop_core::remote::RemoteEngine;
/// use inloop_core::NewTask;
/// use serde_json::json;
/// let remote = RemoteEngine::new("http://127.0.0.1:7070", "ilk_...")?;
/// let done = remote.ask(NewTask {
///     title: "Approve this refund?".into(),
///     payload: json!({"order_id": "A-1"}),
///     response_schema: json!({"type": "boolean"}),
///     key: Some("refund-A-1".into()),
///     ..Default::default()
/// }).await?;
/// println!("{:?}", done.response);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteEngine {
    base: Url,
    key: String,
    transport: std::sync::Arc<transport::Transport>,
}

impl std::fmt::Debug for RemoteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEngine")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Not idempotent (answer, cancel): only a refused connection is retried, for `RETRY_FOR`.
    ConnectOnly,
    /// Idempotent: transient failures are retried until this instant.
    Until(Instant),
    /// A wait without a limit: transient failures are retried forever.
    Forever,
}

/// What one failed attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request never reached the server (connection refused, DNS): always safe to retry.
    NotSent,
    /// The request may have reached the server (reset, timeout, 502/503/504): safe to retry
    /// when the call is idempotent.
    Transient,
    /// Anything else: returned to the caller at once.
    Final,
}

/// Classifies a transport error.
pub fn classify_transport(e: &reqwest::Error) -> Failure {
    if e.is_connect() {
        Failure::NotSent
    } else if e.is_timeout() || e.is_request() || e.is_body() || e.is_decode() {
        // Reset while sending or reading, a timeout, or a body cut short.
        Failure::Transient
    } else if e.is_builder() || e.is_redirect() || e.is_status() {
        Failure::Final
    } else {
        Failure::Transient
    }
}

/// Classifies an HTTP status: gateways and an unavailable server are transient.
pub fn classify_status(status: u16) -> Failure {
    match status {
        502..=504 => Failure::Transient,
        _ => Failure::Final,
    }
}

impl RemoteEngine {
    /// A client of the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix), authenticating with `api_key`. Connects lazily.
    pub fn new(base_url: &str, api_key: &str) -> Result<RemoteEngine> {
        let base = Url::parse(base_url.trim()).map_err(|e| {
            Error::Config(format!(
                "the inloop server URL {base_url:?} is not a URL: {e}"
            ))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config(format!(
                "the inloop server URL must be http:// or https://, not {base_url:?}"
            )));
        }
        let key = api_key.trim();
        if key.is_empty() {
            return Err(Error::Config(
                "an API key is needed to use an inloop server: set INLOOP_API_KEY \
                 (create one with `inloop apikey create --name NAME`)"
                    .into(),
            ));
        }
        if key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::Config(
                "the API key contains invalid characters".into(),
            ));
        }
        let transport = std::sync::Arc::new(transport::Transport::new(&base, CONNECT_TIMEOUT)?);
        Ok(RemoteEngine {
            base,
            key: key.to_string(),
            transport,
        })
    }

    /// Whether this client speaks HTTP/2 to an `http://` server (settled by its first call):
    /// then every call and long poll of the process shares one connection. `inloop serve`
    /// offers it; a proxy that speaks only HTTP/1.1 gets HTTP/1.1.
    pub fn multiplexed(&self) -> bool {
        self.transport.h2c()
    }

    /// The server's URL (without credentials).
    pub fn url(&self) -> String {
        let mut u = self.base.clone();
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        u.set_query(None);
        u.set_fragment(None);
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        u
    }

    fn task_url(&self, id: Uuid, rest: Option<&str>) -> Url {
        let id = id.to_string();
        match rest {
            Some(r) => self.endpoint(&["tasks", &id, r]),
            None => self.endpoint(&["tasks", &id]),
        }
    }

    /// Sends one request, retrying by `retry`, and decodes a 2xx body as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Duration,
        retry: Retry,
    ) -> Result<T> {
        let started = Instant::now();
        let mut backoff = BACKOFF_START;
        loop {
            let failure = match self
                .attempt(method.clone(), url.clone(), body, timeout)
                .await
            {
                Ok(t) => return Ok(t),
                Err((failure, e)) => (failure, e),
            };
            let (kind, err) = failure;
            let may_retry = match (kind, retry) {
                (Failure::Final, _) => false,
                (Failure::NotSent, Retry::ConnectOnly) => started.elapsed() < RETRY_FOR,
                (Failure::Transient, Retry::ConnectOnly) => false,
                (_, Retry::Until(at)) => Instant::now() + backoff < at,
                (_, Retry::Forever) => true,
            };
            if !may_retry {
                return Err(err);
            }
            tracing::debug!(error = %err, ?backoff, "inloop: server unavailable, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Duration,
    ) -> std::result::Result<T, (Failure, Error)> {
        let mut req = self
            .transport
            .client()
            .await
            .request(method, url.clone())
            .bearer_auth(&self.key)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| {
            let kind = classify_transport(&e);
            (
                kind,
                Error::Database(format!(
                    "cannot reach the inloop server at {}: {}",
                    self.url(),
                    error_chain(&e)
                )),
            )
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                (
                    Failure::Final,
                    Error::Internal(format!(
                        "the inloop server at {} sent an unexpected response to {}: {e}",
                        self.url(),
                        url.path()
                    )),
                )
            });
        }
        Err((
            classify_status(status.as_u16()),
            error_from_response(status, &bytes),
        ))
    }

    fn deadline(&self) -> Retry {
        Retry::Until(Instant::now() + RETRY_FOR)
    }

    /// Creates the task, or returns the one its key names (idempotent: a key is generated
    /// here when none is given, so a retried request cannot create twice).
    pub async fn create(&self, mut new: NewTask) -> Result<Created> {
        if new.key.is_none() {
            new.key = Some(Uuid::now_v7().to_string());
        }
        let body = serde_json::to_value(&new)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the request: {e}")))?;
        let url = self.endpoint(&["tasks"]);
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            self.deadline(),
        )
        .await
    }

    /// The task with this id.
    pub async fn get(&self, id: Uuid) -> Result<Task> {
        let url = self.task_url(id, None);
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }

    /// The task `key` names in `namespace`, which must be the API key's namespace (the server
    /// refuses another with `forbidden`, as it refuses creating there).
    pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Task> {
        let mut url = self.endpoint(&["tasks", "by-key", key]);
        url.query_pairs_mut().append_pair("namespace", namespace);
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }

    /// Tasks matching `filter` in the API key's namespace (`filter.namespace`, when given,
    /// must be that namespace: the server refuses another with `forbidden`).
    pub async fn list(&self, filter: ListFilter) -> Result<Page> {
        let mut url = self.endpoint(&["tasks"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(ns) = filter.namespace.as_deref() {
                q.append_pair("namespace", ns);
            }
            if let Some(a) = filter.assignee.as_deref().filter(|a| !a.is_empty()) {
                q.append_pair("assignee", a);
            }
            if let Some(s) = filter.status {
                q.append_pair("status", s.as_str());
            }
            if let Some(p) = filter.key_prefix.as_deref().filter(|p| !p.is_empty()) {
                q.append_pair("key_prefix", p);
            }
            if let Some(t) = filter.created_after {
                q.append_pair("created_after", &t.to_string());
            }
            if let Some(t) = filter.created_before {
                q.append_pair("created_before", &t.to_string());
            }
            if let Some(l) = filter.limit {
                q.append_pair("limit", &l.to_string());
            }
            if let Some(c) = filter.cursor.as_deref().filter(|c| !c.is_empty()) {
                q.append_pair("cursor", c);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }

    /// Submits an answer (validated by the server's core). `answer.channel` is not sent: the
    /// server records the channel of the REST API.
    pub async fn answer(&self, id: Uuid, answer: Answer) -> Result<Task> {
        let body = json!({ "response": answer.response, "by": answer.by });
        let url = self.task_url(id, Some("answer"));
        // An answer may wait for the task's LLM verifier (at most its timeout).
        let limit = REQUEST_TIMEOUT + Duration::from_millis(crate::verify::MAX_TIMEOUT_MS);
        self.call(Method::POST, url, Some(&body), limit, Retry::ConnectOnly)
            .await
    }

    /// Records the agent's own verifier's verdict on the completed task's answer
    /// ([`crate::Engine::submit_verdict`]).
    pub async fn submit_verdict(
        &self,
        id: Uuid,
        verdict: crate::engine::AgentVerdict,
    ) -> Result<Task> {
        let body = serde_json::to_value(&verdict)
            .map_err(|e| Error::Internal(format!("verdict as JSON: {e}")))?;
        let url = self.task_url(id, Some("verdict"));
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            Retry::ConnectOnly,
        )
        .await
    }

    /// Cancels a pending task as `by`. `_channel` is not sent: the server records the channel
    /// of the REST API.
    pub async fn cancel(
        &self,
        id: Uuid,
        by: &str,
        _channel: &str,
        reason: Option<&str>,
    ) -> Result<Task> {
        let body = json!({ "reason": reason, "by": by });
        let url = self.task_url(id, Some("cancel"));
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            Retry::ConnectOnly,
        )
        .await
    }

    /// Waits until the task ends, or until `limit` passes (then returns it still pending), by
    /// long polls of at most [`MAX_POLL`]. Without a limit, an unreachable server is retried
    /// until it answers again.
    pub async fn wait(&self, id: Uuid, limit: Option<Duration>) -> Result<Task> {
        let limit_at = limit.map(|d| Instant::now() + d);
        loop {
            let poll = match limit_at {
                Some(at) => at.saturating_duration_since(Instant::now()).min(MAX_POLL),
                None => MAX_POLL,
            };
            let mut url = self.task_url(id, Some("wait"));
            url.query_pairs_mut()
                .append_pair("timeout_ms", &poll.as_millis().to_string());
            let retry = match limit_at {
                Some(at) => Retry::Until(at.max(Instant::now() + BACKOFF_MAX)),
                None => Retry::Forever,
            };
            let task: Task = self
                .call(Method::GET, url, None, poll + REQUEST_TIMEOUT, retry)
                .await?;
            if task.status.is_final() || limit_at.is_some_and(|at| at <= Instant::now()) {
                return Ok(task);
            }
        }
    }

    /// Waits for the task's outcome: the completed task, or [`Error::TimedOut`] /
    /// [`Error::Cancelled`]. Never returns a pending task.
    pub async fn await_response(&self, id: Uuid) -> Result<Task> {
        let span = crate::telemetry::TaskSpan::start(crate::telemetry::RESUME);
        let ended = self.wait(id, None).await?;
        span.end(&ended, Vec::new());
        rules::outcome(ended)
    }

    /// Creates the task (or finds the one its key names) and waits for its outcome.
    pub async fn ask(&self, new: NewTask) -> Result<Task> {
        let created = self.create(new).await?;
        self.await_response(created.task.id).await
    }

    /// The task's audit trail, oldest first.
    pub async fn audit(&self, id: Uuid) -> Result<Vec<AuditEvent>> {
        let url = self.task_url(id, Some("audit"));
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }

    /// Verifies the task's audit hash chain, here (the server's word is not taken for it).
    pub async fn verify_audit(&self, id: Uuid) -> Result<ChainCheck> {
        Ok(audit::verify_chain(&self.audit(id).await?))
    }

    /// `/api/v1/effects/{key}[/rest]?namespace=NS`.
    fn effect_url(&self, namespace: &str, key: &str, rest: Option<&str>) -> Url {
        let mut url = match rest {
            Some(r) => self.endpoint(&["effects", key, r]),
            None => self.endpoint(&["effects", key]),
        };
        url.query_pairs_mut().append_pair("namespace", namespace);
        url
    }

    /// Begins an effect ([`crate::Engine::effect_begin`]). The attempt's token is chosen here
    /// when none is given, before the first try, so a retried begin is the same attempt (the
    /// server answers `run` again) and never a false "in doubt".
    pub async fn effect_begin(
        &self,
        namespace: &str,
        key: &str,
        token: Option<&str>,
        by: Option<&str>,
    ) -> Result<crate::effects::Begin> {
        let token = token.map_or_else(crate::users::random_token, str::to_string);
        let body = json!({ "token": token, "by": by });
        let url = self.effect_url(namespace, key, Some("begin"));
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            self.deadline(),
        )
        .await
    }

    /// Records the attempt's result ([`crate::Engine::effect_finish`]; idempotent, retried).
    pub async fn effect_finish(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        result: Value,
    ) -> Result<crate::effects::Effect> {
        let body = json!({ "token": token, "result": result });
        let url = self.effect_url(namespace, key, Some("finish"));
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            self.deadline(),
        )
        .await
    }

    /// Releases the attempt after a failure ([`crate::Engine::effect_abort`]; idempotent,
    /// retried).
    pub async fn effect_abort(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        error: Option<&str>,
    ) -> Result<crate::effects::Effect> {
        let body = json!({ "token": token, "error": error });
        let url = self.effect_url(namespace, key, Some("abort"));
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            self.deadline(),
        )
        .await
    }

    /// Resolves an effect in doubt ([`crate::Engine::effect_resolve`]; the API key needs
    /// `--allow-answer`). Retried only when the request was never sent.
    pub async fn effect_resolve(
        &self,
        namespace: &str,
        key: &str,
        r: crate::effects::Resolve,
    ) -> Result<crate::effects::Effect> {
        let body = serde_json::to_value(&r)
            .map_err(|e| Error::Internal(format!("resolution as JSON: {e}")))?;
        let url = self.effect_url(namespace, key, Some("resolve"));
        self.call(
            Method::POST,
            url,
            Some(&body),
            REQUEST_TIMEOUT,
            Retry::ConnectOnly,
        )
        .await
    }

    /// The effect `(namespace, key)`.
    pub async fn effect(&self, namespace: &str, key: &str) -> Result<crate::effects::Effect> {
        let url = self.effect_url(namespace, key, None);
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }

    /// Effects of the API key's namespace matching `filter`, oldest first.
    pub async fn effects(
        &self,
        filter: crate::effects::EffectFilter,
    ) -> Result<Vec<crate::effects::Effect>> {
        let mut url = self.endpoint(&["effects"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(ns) = filter.namespace.as_deref() {
                q.append_pair("namespace", ns);
            }
            if let Some(s) = filter.state.as_deref().filter(|s| !s.is_empty()) {
                q.append_pair("state", s);
            }
            if let Some(l) = filter.limit {
                q.append_pair("limit", &l.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }

    /// The effect's audit trail, oldest first.
    pub async fn effect_audit(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Vec<crate::effects::EffectEvent>> {
        let url = self.effect_url(namespace, key, Some("audit"));
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, self.deadline())
            .await
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = inner.source();
    }
    s
}

/// The core error for a non-2xx response: the server's `{"error": {...}}` when it sent one,
/// else an error for the bare status (a proxy's page, say).
pub fn error_from_response(status: StatusCode, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Body,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        details: Value,
    }
    if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) {
        return error_from_parts(&error.code, &error.message, error.details);
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_string();
    let message = format!("the inloop server answered {status}: {text}");
    match status.as_u16() {
        401 => Error::Unauthorized(message),
        403 => Error::Forbidden(message),
        404 => Error::NotFound(message),
        413 => remote("too_large", message),
        502..=504 => Error::Database(message),
        _ => Error::Internal(message),
    }
}

fn remote(code: &str, message: String) -> Error {
    Error::Remote {
        code: code.into(),
        message,
        details: json!({}),
    }
}

/// The core error for a server error `(code, message, details)`: the variant the server's
/// core raised when the details rebuild it exactly (same message, same details), else
/// [`Error::Remote`], which keeps all three as they came.
pub fn error_from_parts(code: &str, message: &str, details: Value) -> Error {
    let details = if details.is_object() {
        details
    } else {
        json!({})
    };
    if let Some(e) = rebuild(code, message, &details)
        && e.to_string() == message
        && e.details() == details
    {
        return e;
    }
    Error::Remote {
        code: code.to_string(),
        message: message.to_string(),
        details,
    }
}

fn rebuild(code: &str, message: &str, d: &Value) -> Option<Error> {
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
    let id = |k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .and_then(|v| Uuid::parse_str(v).ok())
    };
    let at = |k: &str| s(k).and_then(|v| parse_rfc3339(&v).ok());
    let errors = || serde_json::from_value::<Vec<FieldError>>(d.get("errors")?.clone()).ok();
    let known = |v: Option<String>| -> Option<&'static str> {
        [
            "payload",
            "answer",
            "response_schema",
            "payload_schema",
            "result",
        ]
        .into_iter()
        .find(|k| v.as_deref() == Some(*k))
    };
    Some(match code {
        "invalid_payload" => Error::InvalidPayload { errors: errors()? },
        "invalid_answer" => Error::InvalidAnswer { errors: errors()? },
        "invalid_schema" => Error::InvalidSchema {
            which: known(s("schema"))?,
            message: message.split_once("): ")?.1.to_string(),
        },
        "invalid_argument" => {
            Error::InvalidArgument(message.strip_prefix("invalid argument: ")?.to_string())
        }
        "too_large" => Error::TooLarge {
            what: known(s("what"))?,
            size: d.get("size")?.as_u64()? as usize,
            limit: d.get("limit")?.as_u64()? as usize,
        },
        "not_found" => Error::NotFound(s("id")?),
        "key_reused" => Error::KeyReused {
            namespace: s("namespace")?,
            key: s("key")?,
            existing: id("existing_task")?,
            existing_digest: s("existing_digest")?,
            new_digest: s("new_digest")?,
        },
        "conflict" if d.get("task_id").is_none() => Error::EffectConflict {
            namespace: s("namespace")?,
            key: s("key")?,
            state: s("state")?,
            reason: s("reason")?,
        },
        "effect_in_doubt" => Error::EffectInDoubt {
            namespace: s("namespace")?,
            key: s("key")?,
            attempt: u32::try_from(d.get("attempt")?.as_u64()?).ok()?,
            started_at: at("started_at")?,
            started_by: s("started_by"),
        },
        "digest_mismatch" => Error::DigestMismatch {
            task_id: s("task_id")?,
            expected: s("expected")?,
            actual: s("actual")?,
        },
        "conflict" => Error::Conflict {
            id: id("task_id")?,
            status: serde_json::from_value::<Status>(d.get("status")?.clone()).ok()?,
            by: s("by"),
            at: at("at")?,
        },
        "timed_out" => Error::TimedOut {
            id: id("task_id")?,
            at: at("at")?,
        },
        "cancelled" => Error::Cancelled {
            id: id("task_id")?,
            by: s("by"),
            at: at("at")?,
            reason: s("reason"),
        },
        "verification_rejected" => Error::VerificationRejected {
            id: id("task_id")?,
            verifier: s("verifier")?,
            reason: s("reason")?,
            rule: s("rule"),
            attempt: u32::try_from(d.get("attempt")?.as_u64()?).ok()?,
            max_attempts: u32::try_from(d.get("max_attempts")?.as_u64()?).ok()?,
        },
        "verification_inconclusive" => Error::VerificationInconclusive {
            id: id("task_id")?,
            verifier: s("verifier")?,
            reason: s("reason")?,
        },
        "verification_pending" => Error::VerificationPending {
            id: id("task_id")?,
            until: at("until")?,
        },
        "verification_exhausted" => Error::VerificationExhausted {
            id: id("task_id")?,
            at: at("at")?,
            rejections: serde_json::from_value(d.get("rejections")?.clone()).ok()?,
        },
        "unauthorized" => Error::Unauthorized(message.strip_prefix("unauthorized: ")?.to_string()),
        "forbidden" => Error::Forbidden(message.strip_prefix("forbidden: ")?.to_string()),
        "config" => Error::Config(message.strip_prefix("configuration error: ")?.to_string()),
        "database" => Error::Database(message.strip_prefix("database error: ")?.to_string()),
        "internal" => Error::Internal(message.strip_prefix("internal error: ")?.to_string()),
        _ => return None,
    })
}

/// The codes a server may send, as `&'static str` for [`Error::code`]; an unknown code is
/// `"internal"` there (the `Remote` variant still keeps the code as sent).
pub(crate) fn static_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "invalid_payload",
        "invalid_answer",
        "invalid_schema",
        "invalid_argument",
        "invalid_json",
        "too_large",
        "unauthorized",
        "forbidden",
        "not_found",
        "key_reused",
        "conflict",
        "timed_out",
        "cancelled",
        "verification_rejected",
        "verification_inconclusive",
        "verification_pending",
        "verification_exhausted",
        "effect_in_doubt",
        "digest_mismatch",
        "config",
        "database",
        "unavailable",
        "internal",
    ];
    CODES
        .iter()
        .copied()
        .find(|c| *c == code)
        .unwrap_or("internal")
}

#[cfg(test)]
mod tests;
