//! Verdicts on an accepted answer: the task's LLM verifier, and the agent's own (SDK) verifier.

use uuid::Uuid;

use super::Engine;
use super::checks::{check_actor, check_text};
use crate::access::{self, Principal};
use crate::error::{Error, Result};
use crate::model::{Answer, Task};
use crate::rules;
use crate::store::Decision;
use crate::telemetry::{self, TaskSpan};
use crate::verify::{self, Judged, Verdict};

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

impl Engine {
    /// Runs the task's LLM verifier on `answer` (which holds lease `token`), then applies the
    /// verdict with a compare-and-set on the lease.
    pub(super) async fn finish_verification(
        &self,
        task: Task,
        answer: Answer,
        token: String,
    ) -> Result<Task> {
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
        let span = TaskSpan::start(telemetry::VERIFY);
        let judged = verify::llm::verify(http, &self.inner.opts.verifiers, spec, &ctx).await;
        span.end(&task, judged_attrs(&judged));
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
        let span = TaskSpan::start(telemetry::VERIFY);
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
        match &result {
            Ok(()) | Err(Error::VerificationRejected { .. }) => {
                span.end(&after, judged_attrs(&judged))
            }
            Err(e) => span.fail(&after, e),
        }
        match result {
            Ok(()) | Err(Error::VerificationRejected { .. }) => Ok(after),
            Err(e) => Err(e),
        }
    }
}

/// The attributes of an `inloop.verify` span: which verifier, and its verdict.
fn judged_attrs(j: &Judged) -> Vec<opentelemetry::KeyValue> {
    if !telemetry::enabled() {
        return Vec::new();
    }
    vec![
        opentelemetry::KeyValue::new("inloop.verify.verifier", j.verifier.clone()),
        opentelemetry::KeyValue::new("inloop.verify.verdict", j.verdict.as_str()),
    ]
}
