//! Verification of answers: the spec a task carries, the deterministic rules language, the
//! verdicts, and the LLM verifier.
//!
//! An answer passes, in order: the response JSON Schema (always, `engine/answer.rs`), the task's
//! deterministic rules ([`expr`]), then its optional LLM verifier ([`llm`]). Rules run under
//! the task's row lock (they are pure and take microseconds); an LLM call never does (see
//! `docs/verification.md`, "Concurrency"). What a verdict does to the task is decided in
//! `rules.rs`, like every other transition.

pub mod expr;
pub mod llm;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The most rules a task may carry.
pub const MAX_RULES: usize = 50;
/// The largest `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 20;
/// The longest LLM verifier timeout (ms).
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// The default LLM verifier timeout (ms).
pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;
/// The longest `instructions` (bytes).
pub const MAX_INSTRUCTIONS_BYTES: usize = 16 * 1024;

/// How a task's answers are verified after the response schema. Part of [`crate::NewTask`]
/// (`verification`); stored with the task and, when present, part of its digest.
///
/// ```
/// use inloop_core::verify::Verification;
/// let v: Verification = serde_json::from_value(serde_json::json!({
///     "rules": [{"name": "within amount",
///                "check": {"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]},
///                "message": "the refund may not exceed the order amount"}],
///     "llm": {"provider": "anthropic", "model": "claude-sonnet-4-6",
///             "instructions": "Reject refunds without a reason."},
///     "max_attempts": 3,
///     "on_inconclusive": "fail_closed"
/// })).unwrap();
/// v.check().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// Deterministic rules over `{answer, payload}`, checked in order (docs/verification.md).
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// An LLM verifier run by the core after the rules pass.
    #[serde(default)]
    pub llm: Option<LlmSpec>,
    /// How many answers may be rejected: the rejection that reaches this number ends the task
    /// as `verification_exhausted`. 1..=20, default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// What an inconclusive verdict (provider down, refusal, malformed output, timeout, an
    /// exception in an SDK verifier) does: `fail_closed` (default: keep the task pending and
    /// tell the human) or `fail_open` (accept the answer, audited).
    #[serde(default)]
    pub on_inconclusive: FailPolicy,
}

fn default_attempts() -> u32 {
    3
}

/// One deterministic rule: when `when` holds (or always, without it), `check` must hold, or
/// the answer is rejected with `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A short name, recorded in the audit trail.
    pub name: String,
    /// Optional condition; the rule applies only when it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub when: Option<Value>,
    /// The condition the answer must meet.
    #[schema(value_type = Value)]
    pub check: Value,
    /// The reason shown to the human when the check fails.
    pub message: String,
}

/// The fail policy for inconclusive verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailPolicy {
    #[default]
    FailClosed,
    FailOpen,
}

/// Which LLM provider verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Anthropic,
    Openai,
    AzureOpenai,
    Gemini,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Anthropic => "anthropic",
            Provider::Openai => "openai",
            Provider::AzureOpenai => "azure_openai",
            Provider::Gemini => "gemini",
        }
    }
}

/// Which API surface of the provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Anthropic: `output_config.format` JSON-schema output (the default).
    JsonSchema,
    /// Anthropic: a forced tool whose input is the verdict (every Claude model).
    Tool,
    /// OpenAI / Azure: Chat Completions with `response_format: json_schema` (the default).
    Chat,
    /// OpenAI / Azure v1: the Responses API with `text.format` json_schema.
    Responses,
    /// Gemini: `generateContent` with `responseJsonSchema` (the default and only one).
    GenerateContent,
}

/// The LLM verifier of a task. Credentials and base URLs are never part of it: they come from
/// the process's configuration ([`llm::ProviderConfig`], environment variables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    pub provider: Provider,
    /// The model (for Azure OpenAI: the deployment name).
    pub model: String,
    /// What the verifier should check, in words (the policy). Added to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The API surface; the provider's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// Azure OpenAI only: a dated `api-version` for the deployment URL; absent: the v1 surface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The whole call's time limit in ms (retries after a 429 included). Default 20000, at
    /// most 120000. Past it the verdict is inconclusive.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl LlmSpec {
    /// The API surface, the provider's default filled in.
    pub fn api(&self) -> Api {
        self.api.unwrap_or(match self.provider {
            Provider::Anthropic => Api::JsonSchema,
            Provider::Openai | Provider::AzureOpenai => Api::Chat,
            Provider::Gemini => Api::GenerateContent,
        })
    }

    /// `llm:PROVIDER`, the verifier's name in verdicts and the audit trail.
    pub fn name(&self) -> String {
        format!("llm:{}", self.provider.as_str())
    }
}

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

impl Verification {
    /// Checks the spec: every rule compiles, limits hold, the LLM settings fit the provider.
    /// Errors are `invalid_argument` naming the field (`verification.rules[1].check: ...`).
    pub fn check(&self) -> Result<()> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(bad(format!(
                "verification.max_attempts must be 1..={MAX_ATTEMPTS}, not {}",
                self.max_attempts
            )));
        }
        if self.rules.len() > MAX_RULES {
            return Err(bad(format!(
                "verification.rules has {} rules, over the limit of {MAX_RULES}",
                self.rules.len()
            )));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("verification.rules[{i}]");
            crate::engine::check_text(&format!("{at}.name"), &r.name, 200)?;
            crate::engine::check_text(&format!("{at}.message"), &r.message, 2000)?;
            if let Some(w) = &r.when {
                expr::Expr::compile(w).map_err(|e| bad(format!("{at}.when: {e}")))?;
            }
            expr::Expr::compile(&r.check).map_err(|e| bad(format!("{at}.check: {e}")))?;
        }
        if let Some(l) = &self.llm {
            l.check()?;
        }
        Ok(())
    }

    /// The spec as JSON (for the digest and the database).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl LlmSpec {
    fn check(&self) -> Result<()> {
        let model = self.model.trim();
        if model.is_empty() || self.model.len() > 200 {
            return Err(bad(
                "verification.llm.model must be 1..=200 bytes (the model, or the Azure deployment)"
                    .into(),
            ));
        }
        if !self
            .model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c))
        {
            return Err(bad(format!(
                "verification.llm.model {:?} may only contain ASCII letters, digits and - _ . : / @",
                self.model
            )));
        }
        if let Some(i) = &self.instructions {
            crate::engine::check_text("verification.llm.instructions", i, MAX_INSTRUCTIONS_BYTES)?;
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(bad(format!(
                "verification.llm.timeout_ms must be 1..={MAX_TIMEOUT_MS}, not {}",
                self.timeout_ms
            )));
        }
        let ok = matches!(
            (self.provider, self.api()),
            (Provider::Anthropic, Api::JsonSchema | Api::Tool)
                | (Provider::Openai, Api::Chat | Api::Responses)
                | (Provider::AzureOpenai, Api::Chat | Api::Responses)
                | (Provider::Gemini, Api::GenerateContent)
        );
        if !ok {
            return Err(bad(format!(
                "verification.llm.api {:?} does not fit provider {} (anthropic: json_schema, tool; \
                 openai and azure_openai: chat, responses; gemini: generate_content)",
                serde_json::to_value(self.api()).unwrap_or(Value::Null),
                self.provider.as_str()
            )));
        }
        match (&self.api_version, self.provider) {
            (Some(_), p) if p != Provider::AzureOpenai => {
                return Err(bad(
                    "verification.llm.api_version applies to azure_openai only".into(),
                ));
            }
            (Some(v), _) => {
                if v.is_empty()
                    || v.len() > 40
                    || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(bad(format!(
                        "verification.llm.api_version {v:?} must look like 2024-10-21"
                    )));
                }
                if self.api() == Api::Responses {
                    return Err(bad(
                        "verification.llm: the Responses API on Azure uses the v1 surface; drop api_version"
                            .into(),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What a verifier concluded about one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Reject(String),
    Inconclusive(String),
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Reject(_) => "reject",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Pass => None,
            Verdict::Reject(r) | Verdict::Inconclusive(r) => Some(r),
        }
    }
}

/// A verdict with who reached it and how long it took (what the audit row records).
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    /// `rules`, `llm:anthropic` ..., or `sdk:NAME` for an agent-side verifier.
    pub verifier: String,
    pub model: Option<String>,
    pub latency_ms: u64,
    /// The rule that rejected, for `rules`.
    pub rule: Option<String>,
}

/// One rejected answer, kept on the task (shown to the human, given to the LLM verifier as
/// context, and raised with `verification_exhausted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejection {
    /// 1 for the first rejected answer.
    pub attempt: u32,
    pub verifier: String,
    pub reason: String,
    /// Who gave the rejected answer.
    pub by: Option<String>,
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
}

/// The deterministic rules' verdict on `answer` (`Pass` when every applicable rule holds).
pub fn run_rules(spec: &Verification, payload: &Value, answer: &Value) -> Judged {
    let start = std::time::Instant::now();
    let doc = serde_json::json!({ "answer": answer, "payload": payload });
    let mut out = Judged {
        verdict: Verdict::Pass,
        verifier: "rules".into(),
        model: None,
        latency_ms: 0,
        rule: None,
    };
    for r in &spec.rules {
        // Checked at creation; a stored rule that no longer compiles rejects, never passes.
        let applies = match &r.when {
            None => Ok(true),
            Some(w) => expr::Expr::compile(w).map(|e| e.holds(&doc)),
        };
        let holds = match applies {
            Ok(false) => true,
            Ok(true) => expr::Expr::compile(&r.check)
                .map(|e| e.holds(&doc))
                .unwrap_or(false),
            Err(_) => false,
        };
        if !holds {
            out.verdict = Verdict::Reject(r.message.clone());
            out.rule = Some(r.name.clone());
            break;
        }
    }
    out.latency_ms = start.elapsed().as_millis() as u64;
    out
}
