//! A fake LLM provider on loopback that speaks each provider's request and response shapes
//! (docs/verification.md, /shared WIRE-FORMATS §5): it checks the auth header and the body
//! fields of every request, records them, and answers from a script (pass, reject, malformed
//! JSON, refusal, 429 with retry-after, 500, a slow reply).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The API key the fake expects.
pub const KEY: &str = "sk-test-fake-key";

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Pass,
    Reject(String),
    /// The model itself says it cannot tell.
    Unsure(String),
    /// Text that is not JSON.
    Malformed,
    Refusal,
    /// 429 with `retry-after` in seconds.
    RateLimited(f64),
    ServerError,
    /// Waits, then passes.
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub surface: &'static str,
    pub path: String,
    pub query: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    seen: Vec<Seen>,
    /// Requests that did not have the expected shape (each fails the test).
    problems: Vec<String>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeLlm {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeLlm {
    pub async fn start() -> FakeLlm {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLlm { url, inner }
    }

    /// Queues replies (used in order; [`Reply::Pass`] when the script runs out).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Panics if any request had the wrong shape.
    pub fn assert_clean(&self) {
        let p = self.inner.lock().unwrap().problems.clone();
        assert!(p.is_empty(), "malformed provider requests: {p:#?}");
    }
}

fn verdict_text(verdict: &str, reason: &str) -> String {
    json!({"verdict": verdict, "reason": reason}).to_string()
}

/// Checks that `body[path...]` exists (and equals `want` when given).
fn need(problems: &mut Vec<String>, body: &Value, pointer: &str, want: Option<Value>) {
    match (body.pointer(pointer), want) {
        (None, _) => problems.push(format!("missing {pointer}")),
        (Some(v), Some(w)) if *v != w => problems.push(format!("{pointer} is {v}, expected {w}")),
        _ => {}
    }
}

fn check_schema(problems: &mut Vec<String>, schema: Option<&Value>) {
    let Some(s) = schema else {
        problems.push("no verdict schema".into());
        return;
    };
    if s["additionalProperties"] != false
        || s["required"] != json!(["verdict", "reason"])
        || s["properties"]["verdict"]["enum"] != json!(["pass", "reject", "inconclusive"])
    {
        problems.push(format!("unexpected verdict schema {s}"));
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    let bearer = format!("Bearer {KEY}");
    let surface: &'static str = if path.ends_with("/v1/messages") {
        if h("x-api-key") != KEY && h("authorization") != bearer {
            problems.push("anthropic: no x-api-key".into());
        }
        if h("anthropic-version").is_empty() {
            problems.push("anthropic: no anthropic-version".into());
        }
        need(&mut problems, &body, "/model", None);
        need(&mut problems, &body, "/max_tokens", None);
        need(&mut problems, &body, "/system", None);
        need(
            &mut problems,
            &body,
            "/messages/0/role",
            Some(json!("user")),
        );
        if body.get("tools").is_some() {
            need(
                &mut problems,
                &body,
                "/tool_choice",
                Some(json!({"type": "tool", "name": "record_verdict"})),
            );
            check_schema(&mut problems, body.pointer("/tools/0/input_schema"));
            "anthropic_tool"
        } else {
            need(
                &mut problems,
                &body,
                "/output_config/format/type",
                Some(json!("json_schema")),
            );
            check_schema(&mut problems, body.pointer("/output_config/format/schema"));
            "anthropic"
        }
    } else if path.ends_with("/chat/completions") || path.ends_with("/responses") {
        let surface = if path.contains("/openai/deployments/") {
            if !query.as_deref().unwrap_or("").starts_with("api-version=") {
                problems.push("azure: no api-version".into());
            }
            "azure_deployment"
        } else if path.starts_with("/openai/v1/") {
            if path.ends_with("/responses") {
                "azure_v1_responses"
            } else {
                "azure_v1"
            }
        } else if path.ends_with("/responses") {
            "openai_responses"
        } else {
            "openai_chat"
        };
        if surface.starts_with("azure") {
            if h("api-key") != KEY {
                problems.push("azure: no api-key header".into());
            }
            if !h("authorization").is_empty() {
                problems.push("azure: unexpected authorization header".into());
            }
        } else if h("authorization") != bearer {
            problems.push("openai: no Bearer authorization".into());
        }
        need(&mut problems, &body, "/model", None);
        if path.ends_with("/responses") {
            need(&mut problems, &body, "/instructions", None);
            need(&mut problems, &body, "/input", None);
            need(
                &mut problems,
                &body,
                "/text/format/type",
                Some(json!("json_schema")),
            );
            need(&mut problems, &body, "/text/format/name", None);
            need(
                &mut problems,
                &body,
                "/text/format/strict",
                Some(json!(true)),
            );
            check_schema(&mut problems, body.pointer("/text/format/schema"));
        } else {
            need(
                &mut problems,
                &body,
                "/messages/0/role",
                Some(json!("system")),
            );
            need(
                &mut problems,
                &body,
                "/messages/1/role",
                Some(json!("user")),
            );
            need(
                &mut problems,
                &body,
                "/response_format/type",
                Some(json!("json_schema")),
            );
            need(
                &mut problems,
                &body,
                "/response_format/json_schema/name",
                None,
            );
            need(
                &mut problems,
                &body,
                "/response_format/json_schema/strict",
                Some(json!(true)),
            );
            check_schema(
                &mut problems,
                body.pointer("/response_format/json_schema/schema"),
            );
        }
        surface
    } else if path.ends_with(":generateContent") {
        if h("x-goog-api-key") != KEY {
            problems.push("gemini: no x-goog-api-key".into());
        }
        need(&mut problems, &body, "/contents/0/parts/0/text", None);
        need(
            &mut problems,
            &body,
            "/systemInstruction/parts/0/text",
            None,
        );
        need(
            &mut problems,
            &body,
            "/generationConfig/responseMimeType",
            Some(json!("application/json")),
        );
        check_schema(
            &mut problems,
            body.pointer("/generationConfig/responseJsonSchema"),
        );
        "gemini"
    } else {
        problems.push(format!("unknown path {path}"));
        "unknown"
    };
    let reply = {
        let mut g = inner.lock().unwrap();
        g.seen.push(Seen {
            surface,
            path: path.clone(),
            query,
            body: body.clone(),
        });
        if !problems.is_empty() {
            g.problems
                .extend(problems.iter().map(|p| format!("{path}: {p}")));
            return (StatusCode::BAD_REQUEST, problems.join("; ")).into_response();
        }
        g.script.pop_front().unwrap_or(Reply::Pass)
    };
    let text = match &reply {
        Reply::Pass => verdict_text("pass", "looks right"),
        Reply::Reject(r) => verdict_text("reject", r),
        Reply::Unsure(r) => verdict_text("inconclusive", r),
        Reply::Malformed => "this is not {json".into(),
        Reply::Refusal => String::new(),
        Reply::RateLimited(secs) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                axum::Json(json!({"error": {"type": "rate_limit_error", "message": "slow down"}})),
            )
                .into_response();
        }
        Reply::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": "boom"})),
            )
                .into_response();
        }
        Reply::Slow(d) => {
            tokio::time::sleep(*d).await;
            verdict_text("pass", "slow but fine")
        }
    };
    let refused = matches!(reply, Reply::Refusal);
    let out = match surface {
        "anthropic" => json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
            "content": if refused { json!([]) } else { json!([{"type": "text", "text": text}]) },
            "stop_reason": if refused { "refusal" } else { "end_turn" }, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5}
        }),
        "anthropic_tool" => {
            let input: Value = serde_json::from_str(&text).unwrap_or(json!({"verdict": 7}));
            json!({
                "id": "msg_01", "type": "message", "role": "assistant", "model": body["model"],
                "content": if refused { json!([]) } else {
                    json!([{"type": "tool_use", "id": "toolu_01", "name": "record_verdict", "input": input}])
                },
                "stop_reason": if refused { "refusal" } else { "tool_use" },
                "usage": {"input_tokens": 10, "output_tokens": 5}
            })
        }
        "openai_chat" | "azure_deployment" | "azure_v1" => json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": if refused { Value::Null } else { json!(text) },
                "refusal": if refused { json!("I can't help with that.") } else { Value::Null }},
                "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }),
        "openai_responses" | "azure_v1_responses" => json!({
            "id": "resp_1", "object": "response", "created_at": 1_700_000_000, "status": "completed",
            "model": body["model"], "error": null, "incomplete_details": null,
            "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
                       {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": if refused { json!([{"type": "refusal", "refusal": "I can't."}]) }
                                   else { json!([{"type": "output_text", "text": text, "annotations": []}]) }}],
            "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        }),
        _ => json!({
            "candidates": [{"content": {"role": "model",
                "parts": if refused { json!([]) } else { json!([{"text": "thinking...", "thought": true}, {"text": text}]) }},
                "finishReason": if refused { "SAFETY" } else { "STOP" }, "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": "gemini-x"
        }),
    };
    axum::Json(out).into_response()
}
