//! Verification over the REST API and the remote client, on both backends: a spec on create,
//! rejections as HTTP errors with the reason in `details`, the verdict route, and the same
//! errors rebuilt by `RemoteEngine`.

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use common::Db;
use fake_llm::{FakeLlm, KEY, Reply};
use inloop_core::apikeys::create_api_key;
use inloop_core::engine::AgentVerdict;
use inloop_core::server::{ServerOptions, serve};
use inloop_core::verify::llm::ProviderConfig;
use inloop_core::{EngineOptions, Error, NewTask, RemoteEngine, Status};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Srv {
    base: String,
    agent: String,
    reviewer: String,
    http: reqwest::Client,
}

async fn start(db: &Db, fake: &FakeLlm) -> Srv {
    let engine = db
        .open_with(EngineOptions {
            verifiers: ProviderConfig::all_at(&fake.url, KEY),
            ..Default::default()
        })
        .await;
    let (_, agent) = create_api_key(&engine, "agent", "ops", false)
        .await
        .unwrap();
    let (_, reviewer) = create_api_key(&engine, "reviewer", "ops", true)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        engine,
        listener,
        ServerOptions::default(),
        std::future::pending(),
    ));
    Srv {
        base,
        agent,
        reviewer,
        http: reqwest::Client::new(),
    }
}

impl Srv {
    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

fn request(key: &str, verification: Value) -> Value {
    json!({
        "key": key,
        "title": "Approve the refund?",
        "payload": {"order_id": "A-1", "amount": 500},
        "response_schema": {"type": "object", "required": ["approved"],
                            "properties": {"approved": {"type": "boolean"}, "amount": {"type": "number"}}},
        "verification": verification,
    })
}

async fn rest_rejections_carry_the_reason(db: Db) {
    let fake = FakeLlm::start().await;
    let srv = start(&db, &fake).await;
    let spec = json!({
        "rules": [{"name": "cap", "check": {"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]},
                   "message": "at most the order amount"}],
        "llm": {"provider": "openai", "model": "gpt-x", "api": "responses"},
        "max_attempts": 3
    });
    let (st, created) = srv
        .post("/api/v1/tasks", &srv.agent, request("r-1", spec.clone()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["task"]["verification"]["llm"]["provider"], "openai");
    assert_eq!(created["task"]["attempts"], 0);
    let id = created["task"]["id"].as_str().unwrap().to_string();
    let answer =
        |amount: f64| json!({"response": {"approved": true, "amount": amount}, "by": "alice"});

    let (st, e) = srv
        .post(
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            answer(900.0),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["code"], "verification_rejected");
    assert_eq!(e["error"]["details"]["reason"], "at most the order amount");
    assert_eq!(e["error"]["details"]["attempts_left"], 2);

    fake.script([Reply::Reject("needs a second look".into())]);
    let (_, e) = srv
        .post(
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            answer(100.0),
        )
        .await;
    assert_eq!(e["error"]["details"]["reason"], "needs a second look");
    assert_eq!(e["error"]["details"]["verifier"], "llm:openai");

    fake.script([Reply::ServerError]);
    let (st, e) = srv
        .post(
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            answer(100.0),
        )
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(e["error"]["code"], "verification_inconclusive");

    fake.script([Reply::Reject("no".into())]);
    let (st, e) = srv
        .post(
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            answer(100.0),
        )
        .await;
    assert_eq!(st, StatusCode::GONE);
    assert_eq!(e["error"]["code"], "verification_exhausted");
    assert_eq!(
        e["error"]["details"]["reasons"],
        json!(["at most the order amount", "needs a second look", "no"])
    );

    // The audit rows carry verifier, model, latency and reason for the dashboard.
    let r = srv
        .http
        .get(format!("{}/api/v1/tasks/{id}/audit", srv.base))
        .bearer_auth(&srv.agent)
        .send()
        .await
        .unwrap();
    let rows: Value = r.json().await.unwrap();
    let llm_rows: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "verification_rejected" && r["data"]["verifier"] == "llm:openai")
        .collect();
    assert_eq!(llm_rows.len(), 2);
    assert_eq!(llm_rows[0]["data"]["model"], "gpt-x");
    assert!(llm_rows[0]["data"]["latency_ms"].is_u64());

    // A malformed spec is a 422 invalid_argument naming the field.
    let (st, e) = srv
        .post(
            "/api/v1/tasks",
            &srv.agent,
            request("r-2", json!({"max_attempts": 99})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["code"], "invalid_argument");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("verification.max_attempts")
    );
    fake.assert_clean();
}

async fn remote_agent_verdicts(db: Db) {
    let fake = FakeLlm::start().await;
    let srv = start(&db, &fake).await;
    let remote = RemoteEngine::new(&srv.base, &srv.agent).unwrap();
    let new: NewTask =
        serde_json::from_value(request("sdk-1", json!({"max_attempts": 2}))).unwrap();
    let t = remote.create(new).await.unwrap().task;
    let answer = json!({"response": {"approved": true}, "by": "alice"});
    srv.post(
        &format!("/api/v1/tasks/{}/answer", t.id),
        &srv.reviewer,
        answer.clone(),
    )
    .await;
    let done = remote.await_response(t.id).await.unwrap();
    let v = |attempts, verdict: &str, reason: Option<&str>| AgentVerdict {
        attempts,
        verdict: verdict.into(),
        reason: reason.map(str::to_string),
        verifier: "sdk:check".into(),
        latency_ms: 1,
        by: None,
    };
    let back = remote
        .submit_verdict(t.id, v(done.attempts, "reject", Some("wrong")))
        .await
        .unwrap();
    assert_eq!((back.status, back.attempts), (Status::Pending, 1));
    let e = remote
        .submit_verdict(t.id, v(0, "reject", Some("again")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    srv.post(
        &format!("/api/v1/tasks/{}/answer", t.id),
        &srv.reviewer,
        answer,
    )
    .await;
    let e = remote
        .submit_verdict(t.id, v(1, "reject", Some("still wrong")))
        .await
        .unwrap_err();
    match &e {
        Error::VerificationExhausted { rejections, .. } => assert_eq!(rejections.len(), 2),
        other => panic!("{other:?}"),
    }
    let e = remote.await_response(t.id).await.unwrap_err();
    assert_eq!(e.code(), "verification_exhausted");
    assert_eq!(e.details()["reasons"], json!(["wrong", "still wrong"]));
}

conformance!(rest_rejections_carry_the_reason, remote_agent_verdicts);
