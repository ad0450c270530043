//! The verification pipeline (docs/verification.md), on SQLite and PostgreSQL: the rules
//! language, the LLM verifier against a fake provider on loopback (every provider surface:
//! pass, reject then pass, exhausted, inconclusive fail-open and fail-closed, and each way a
//! provider can fail), the verification lease under concurrent answers, and the agent-side
//! (SDK) verdicts.
//!
//!   cargo test -p inloop-core --test verification            # SQLite (PostgreSQL with
//!                                                            # INLOOP_TEST_PG_URL, see conformance.rs)

mod common;
#[path = "common/fake_llm.rs"]
mod fake_llm;

use std::time::Duration;

use common::Db;
use fake_llm::{FakeLlm, KEY, Reply};
use inloop_core::engine::AgentVerdict;
use inloop_core::verify::llm::ProviderConfig;
use inloop_core::verify::{Api, FailPolicy, LlmSpec, Provider, Rule, Verification};
use inloop_core::{Answer, Engine, EngineOptions, Error, NewTask, Status, Task};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// helpers

fn refund_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "amount": {"type": "number"},
                       "reason": {"type": "string"}},
        "required": ["approved"]
    })
}

fn amount_rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "within the order amount".into(),
            when: Some(json!({"==": [{"var": "/answer/approved"}, true]})),
            check: json!({"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]}),
            message: "the refund may not exceed the order amount".into(),
        },
        Rule {
            name: "denials need a reason".into(),
            when: Some(json!({"==": [{"var": "/answer/approved"}, false]})),
            check: json!({"nonempty": {"var": "/answer/reason"}}),
            message: "say why the refund is denied".into(),
        },
    ]
}

fn task(key: &str, v: Verification) -> NewTask {
    NewTask {
        key: Some(key.into()),
        title: "Approve the refund?".into(),
        payload: json!({"order_id": "A-1", "amount": 500.0}),
        response_schema: refund_schema(),
        verification: Some(v),
        ..Default::default()
    }
}

fn rules_only(max: u32) -> Verification {
    Verification {
        rules: amount_rules(),
        llm: None,
        max_attempts: max,
        on_inconclusive: FailPolicy::FailClosed,
    }
}

fn llm(
    provider: Provider,
    api: Option<Api>,
    api_version: Option<&str>,
    timeout_ms: u64,
) -> LlmSpec {
    LlmSpec {
        provider,
        model: if provider == Provider::AzureOpenai {
            "verifier-deploy".into()
        } else {
            "model-x".into()
        },
        instructions: Some("Reject refunds over 400 without a reason.".into()),
        api,
        api_version: api_version.map(str::to_string),
        timeout_ms,
    }
}

/// Every provider surface: (label, provider, api, azure api_version, the fake's surface name).
fn surfaces() -> Vec<(Provider, Option<Api>, Option<&'static str>, &'static str)> {
    vec![
        (Provider::Anthropic, None, None, "anthropic"),
        (Provider::Anthropic, Some(Api::Tool), None, "anthropic_tool"),
        (Provider::Openai, None, None, "openai_chat"),
        (
            Provider::Openai,
            Some(Api::Responses),
            None,
            "openai_responses",
        ),
        (
            Provider::AzureOpenai,
            None,
            Some("2024-10-21"),
            "azure_deployment",
        ),
        (Provider::AzureOpenai, None, None, "azure_v1"),
        (
            Provider::AzureOpenai,
            Some(Api::Responses),
            None,
            "azure_v1_responses",
        ),
        (Provider::Gemini, None, None, "gemini"),
    ]
}

fn with_llm(spec: LlmSpec, max: u32, policy: FailPolicy) -> Verification {
    Verification {
        rules: amount_rules(),
        llm: Some(spec),
        max_attempts: max,
        on_inconclusive: policy,
    }
}

async fn open(db: &Db, fake: &FakeLlm) -> Engine {
    db.open_with(EngineOptions {
        verifiers: ProviderConfig::all_at(&fake.url, KEY),
        ..Default::default()
    })
    .await
}

fn ans(by: &str, response: Value) -> Answer {
    Answer {
        response,
        by: by.into(),
        channel: "api".into(),
    }
}

fn ok_answer() -> Value {
    json!({"approved": true, "amount": 120.0})
}

async fn kinds(engine: &Engine, id: Uuid) -> Vec<String> {
    engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn chain_ok(engine: &Engine, id: Uuid) {
    let c = engine.verify_audit(id).await.unwrap();
    assert!(c.ok, "audit chain broken: {c:?}");
}

fn rejected(r: Result<Task, Error>) -> (String, Value) {
    match r {
        Err(e @ Error::VerificationRejected { .. }) => (e.code().to_string(), e.details()),
        other => panic!("expected verification_rejected, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// the spec

async fn malformed_specs_are_invalid_arguments(db: Db) {
    let engine = db.open().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"max_attempts": 0}),
            "verification.max_attempts must be 1..=20, not 0",
        ),
        (
            json!({"rules": [{"name": "r", "check": {"=>": [1, 2]}, "message": "m"}]}),
            "verification.rules[0].check: at the top: unknown operator \"=>\"",
        ),
        (
            json!({"rules": [{"name": "r", "check": true, "when": {"var": "/secrets"}, "message": "m"}]}),
            "verification.rules[0].when: at /var: \"/secrets\" is not a JSON Pointer",
        ),
        (
            json!({"rules": [{"name": "", "check": true, "message": "m"}]}),
            "verification.rules[0].name must not be empty",
        ),
        (
            json!({"llm": {"provider": "gemini", "model": "g", "api": "chat"}}),
            "does not fit provider gemini",
        ),
        (
            json!({"llm": {"provider": "openai", "model": "m", "api_version": "2024-10-21"}}),
            "api_version applies to azure_openai only",
        ),
        (
            json!({"llm": {"provider": "anthropic", "model": "m", "timeout_ms": 999999}}),
            "verification.llm.timeout_ms must be 1..=120000",
        ),
        (
            json!({"llm": {"provider": "anthropic", "model": "m a"}}),
            "may only contain ASCII letters",
        ),
    ];
    for (spec, want) in cases {
        let v: Verification = serde_json::from_value(spec.clone()).unwrap();
        let err = engine.create(task("bad", v)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{spec}");
        assert!(err.to_string().contains(want), "{spec}: {err}");
    }
    // Unknown fields and providers are refused when the JSON is read (bindings, REST).
    for bad in [
        json!({"rulez": []}),
        json!({"llm": {"provider": "acme", "model": "m"}}),
    ] {
        assert!(serde_json::from_value::<Verification>(bad).is_err());
    }
}

async fn spec_is_stored_and_in_the_digest(db: Db) {
    let engine = db.open().await;
    let a = engine.create(task("spec-1", rules_only(3))).await.unwrap();
    assert_eq!(
        engine.get(a.task.id).await.unwrap().verification,
        Some(rules_only(3))
    );
    // Without verification the digest is what it always was.
    let plain = NewTask {
        verification: None,
        key: Some("plain".into()),
        ..task("x", rules_only(3))
    };
    let p = engine.create(plain.clone()).await.unwrap();
    assert_eq!(
        p.task.digest,
        inloop_core::schema::task_digest(
            &plain.title,
            &plain.payload,
            None,
            &plain.response_schema
        )
    );
    assert_ne!(p.task.digest, a.task.digest);
    // The same key with another verification contract is another request.
    let err = engine
        .create(task("spec-1", rules_only(5)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "key_reused");
    // The same one is a replay.
    assert!(
        !engine
            .create(task("spec-1", rules_only(3)))
            .await
            .unwrap()
            .created
    );
}

// ---------------------------------------------------------------------------------------------
// deterministic rules

async fn rules_reject_count_and_exhaust(db: Db) {
    let engine = db.open().await;
    let t = engine
        .create(task("rules-1", rules_only(3)))
        .await
        .unwrap()
        .task;
    // An answer breaking the schema is not an attempt.
    let e = engine
        .answer(t.id, ans("alice", json!({"approved": "yes"})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_answer");
    // Over the payload's amount: rejected, with the reason for the human.
    let (code, d) = rejected(
        engine
            .answer(t.id, ans("alice", json!({"approved": true, "amount": 900})))
            .await,
    );
    assert_eq!(code, "verification_rejected");
    assert_eq!(d["reason"], "the refund may not exceed the order amount");
    assert_eq!(d["verifier"], "rules");
    assert_eq!(d["rule"], "within the order amount");
    assert_eq!(
        (d["attempt"].as_u64(), d["attempts_left"].as_u64()),
        (Some(1), Some(2))
    );
    let now = engine.get(t.id).await.unwrap();
    assert_eq!((now.status, now.attempts), (Status::Pending, 1));
    assert_eq!(
        now.rejections[0].reason,
        "the refund may not exceed the order amount"
    );
    assert_eq!(now.rejections[0].by.as_deref(), Some("alice"));
    // A denial without a reason: the other rule.
    let (_, d) = rejected(
        engine
            .answer(t.id, ans("bob", json!({"approved": false, "reason": "  "})))
            .await,
    );
    assert_eq!(d["reason"], "say why the refund is denied");
    // Third rejection ends the task; the agent's wait raises with every reason.
    let waiter = {
        let e = engine.clone();
        tokio::spawn(async move { e.await_response(t.id).await })
    };
    let e = engine
        .answer(t.id, ans("carol", json!({"approved": true, "amount": 501})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "verification_exhausted");
    let e = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    match &e {
        Error::VerificationExhausted { rejections, .. } => assert_eq!(rejections.len(), 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.details()["reasons"].as_array().unwrap().len(), 3);
    let end = engine.get(t.id).await.unwrap();
    assert_eq!(
        (end.status, end.attempts, end.response),
        (Status::VerificationExhausted, 3, None)
    );
    // Nothing more is accepted.
    let e = engine
        .answer(t.id, ans("dave", ok_answer()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    let k = kinds(&engine, t.id).await;
    assert_eq!(
        k,
        [
            "created",
            "answer_refused",
            "verification_rejected",
            "verification_rejected",
            "verification_rejected",
            "verification_exhausted",
            "answer_refused"
        ]
    );
    chain_ok(&engine, t.id).await;
}

async fn rules_pass_is_audited_and_accepted(db: Db) {
    let engine = db.open().await;
    let t = engine
        .create(task("rules-2", rules_only(3)))
        .await
        .unwrap()
        .task;
    let done = engine
        .answer(t.id, ans("alice", ok_answer()))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    let rows = engine.audit(t.id).await.unwrap();
    let pass = rows
        .iter()
        .find(|r| r.kind == "verification_passed")
        .unwrap();
    assert_eq!(pass.data["verifier"], "rules");
    assert!(pass.data["latency_ms"].is_u64());
    assert_eq!(rows.last().unwrap().kind, "answer_accepted");
}

// ---------------------------------------------------------------------------------------------
// the LLM verifier, every provider surface

async fn llm_pass_on_every_provider(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    for (i, (p, api, ver, surface)) in surfaces().into_iter().enumerate() {
        let spec = with_llm(llm(p, api, ver, 5_000), 3, FailPolicy::FailClosed);
        let t = engine
            .create(task(&format!("pass-{i}"), spec))
            .await
            .unwrap()
            .task;
        let done = engine
            .answer(t.id, ans("alice", ok_answer()))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed, "{surface}");
        assert_eq!(done.response, Some(ok_answer()));
        let seen = fake.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.surface, surface);
        // The prompt carries the title, the payload, the schema and the answer.
        let prompt = last.body.to_string();
        for want in [
            "Approve the refund?",
            "A-1",
            "\\\"approved\\\"",
            "120",
            "Reject refunds over 400",
        ] {
            assert!(
                prompt.contains(want),
                "{surface}: prompt lacks {want}: {prompt}"
            );
        }
        let rows = engine.audit(t.id).await.unwrap();
        let v = rows
            .iter()
            .find(|r| r.kind == "verification_passed" && r.data["verifier"] != "rules")
            .unwrap();
        assert_eq!(v.data["verifier"], format!("llm:{}", p.as_str()));
        assert_eq!(
            v.data["model"],
            if p == Provider::AzureOpenai {
                "verifier-deploy"
            } else {
                "model-x"
            }
        );
        assert!(v.data["latency_ms"].is_u64());
        assert_eq!(
            rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
            [
                "created",
                "verification_passed",
                "verification_started",
                "verification_passed",
                "answer_accepted"
            ]
        );
        chain_ok(&engine, t.id).await;
    }
    fake.assert_clean();
}

async fn llm_reject_then_pass_on_every_provider(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    for (i, (p, api, ver, surface)) in surfaces().into_iter().enumerate() {
        let spec = with_llm(llm(p, api, ver, 5_000), 3, FailPolicy::FailClosed);
        let t = engine
            .create(task(&format!("rp-{i}"), spec))
            .await
            .unwrap()
            .task;
        fake.script([Reply::Reject("a 450 refund needs a reason".into())]);
        let (_, d) = rejected(
            engine
                .answer(t.id, ans("alice", json!({"approved": true, "amount": 450})))
                .await,
        );
        assert_eq!(d["reason"], "a 450 refund needs a reason", "{surface}");
        assert_eq!(d["verifier"], format!("llm:{}", p.as_str()));
        let mid = engine.get(t.id).await.unwrap();
        assert_eq!(
            (mid.status, mid.attempts, mid.verifying_until),
            (Status::Pending, 1, None)
        );
        let done = engine
            .answer(
                t.id,
                ans(
                    "alice",
                    json!({"approved": true, "amount": 450, "reason": "damaged"}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed);
        // The second prompt tells the model why the first answer was rejected.
        let seen = fake.seen();
        let prompt = seen.last().unwrap().body.to_string();
        assert!(
            prompt.contains("a 450 refund needs a reason"),
            "{surface}: {prompt}"
        );
        let rows = engine.audit(t.id).await.unwrap();
        let rej = rows
            .iter()
            .find(|r| r.kind == "verification_rejected")
            .unwrap();
        assert_eq!(rej.data["reason"], "a 450 refund needs a reason");
        assert_eq!(rej.actor.as_deref(), Some("alice"));
    }
    fake.assert_clean();
}

async fn llm_reject_until_exhausted_on_every_provider(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    for (i, (p, api, ver, surface)) in surfaces().into_iter().enumerate() {
        let spec = with_llm(llm(p, api, ver, 5_000), 2, FailPolicy::FailClosed);
        let t = engine
            .create(task(&format!("ex-{i}"), spec))
            .await
            .unwrap()
            .task;
        fake.script([Reply::Reject("no".into()), Reply::Reject("still no".into())]);
        rejected(engine.answer(t.id, ans("alice", ok_answer())).await);
        let e = engine
            .answer(t.id, ans("bob", ok_answer()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "verification_exhausted", "{surface}");
        assert_eq!(e.details()["reasons"], json!(["no", "still no"]));
        let e = engine.await_response(t.id).await.unwrap_err();
        assert_eq!(e.code(), "verification_exhausted");
        assert_eq!(
            engine.get(t.id).await.unwrap().status,
            Status::VerificationExhausted
        );
        chain_ok(&engine, t.id).await;
    }
    fake.assert_clean();
}

async fn llm_inconclusive_fail_open_and_closed_on_every_provider(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    for (i, (p, api, ver, surface)) in surfaces().into_iter().enumerate() {
        // fail-closed: the task stays pending, no attempt is counted, the human is told.
        let spec = with_llm(llm(p, api, ver, 5_000), 3, FailPolicy::FailClosed);
        let t = engine
            .create(task(&format!("fc-{i}"), spec))
            .await
            .unwrap()
            .task;
        fake.script([Reply::ServerError]);
        let e = engine
            .answer(t.id, ans("alice", ok_answer()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "verification_inconclusive", "{surface}");
        assert!(
            e.details()["reason"].as_str().unwrap().contains("HTTP 500"),
            "{e}"
        );
        let mid = engine.get(t.id).await.unwrap();
        assert_eq!((mid.status, mid.attempts), (Status::Pending, 0));
        assert_eq!(
            engine
                .answer(t.id, ans("alice", ok_answer()))
                .await
                .unwrap()
                .status,
            Status::Completed
        );
        // fail-open: accepted, and the audit row says so.
        let spec = with_llm(llm(p, api, ver, 5_000), 3, FailPolicy::FailOpen);
        let t = engine
            .create(task(&format!("fo-{i}"), spec))
            .await
            .unwrap()
            .task;
        fake.script([Reply::Malformed]);
        let done = engine
            .answer(t.id, ans("alice", ok_answer()))
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed, "{surface}");
        let rows = engine.audit(t.id).await.unwrap();
        let inc = rows
            .iter()
            .find(|r| r.kind == "verification_inconclusive")
            .unwrap();
        assert_eq!(
            (inc.data["policy"].as_str(), inc.data["accepted"].as_bool()),
            (Some("fail_open"), Some(true))
        );
        // A forced tool's input is JSON already: a bad one fails the core's schema check.
        let want = if surface == "anthropic_tool" {
            "verdict schema"
        } else {
            "not JSON"
        };
        assert!(
            inc.data["reason"].as_str().unwrap().contains(want),
            "{surface}: {}",
            inc.data
        );
    }
    fake.assert_clean();
}

/// Each way a provider can fail is inconclusive, never a pass (checked fail-closed).
async fn provider_failures_are_inconclusive(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Malformed, "not JSON"),
        (Reply::Refusal, "refused"),
        (Reply::ServerError, "HTTP 500"),
        (Reply::RateLimited(30.0), "rate limiting (429"),
        (
            Reply::Slow(Duration::from_secs(3)),
            "within the timeout of 700 ms",
        ),
        (
            Reply::Unsure("cannot read the invoice".into()),
            "the model was unsure: cannot read the invoice",
        ),
    ];
    for (i, (p, api, ver, surface)) in surfaces().into_iter().enumerate() {
        for (j, (reply, want)) in cases.iter().enumerate() {
            let spec = with_llm(llm(p, api, ver, 700), 3, FailPolicy::FailClosed);
            let t = engine
                .create(task(&format!("f-{i}-{j}"), spec))
                .await
                .unwrap()
                .task;
            fake.script([reply.clone()]);
            let started = std::time::Instant::now();
            let e = engine
                .answer(t.id, ans("alice", ok_answer()))
                .await
                .unwrap_err();
            assert_eq!(
                e.code(),
                "verification_inconclusive",
                "{surface} {reply:?}: {e}"
            );
            let reason = e.details()["reason"].as_str().unwrap().to_string();
            let want = match (surface, reply) {
                ("gemini", Reply::Refusal) => "SAFETY",
                ("anthropic_tool", Reply::Malformed) => "verdict schema",
                _ => want,
            };
            assert!(reason.contains(want), "{surface} {reply:?}: {reason}");
            assert!(
                started.elapsed() < Duration::from_millis(2_500),
                "{surface} {reply:?} took {:?}",
                started.elapsed()
            );
            assert_eq!(engine.get(t.id).await.unwrap().attempts, 0);
        }
    }
    fake.assert_clean();
}

async fn rate_limit_within_the_timeout_is_retried(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    let spec = with_llm(
        llm(Provider::Openai, None, None, 5_000),
        3,
        FailPolicy::FailClosed,
    );
    let t = engine.create(task("429", spec)).await.unwrap().task;
    fake.script([Reply::RateLimited(0.2), Reply::Pass]);
    let started = std::time::Instant::now();
    let done = engine
        .answer(t.id, ans("alice", ok_answer()))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "retry-after was honoured"
    );
    assert_eq!(fake.seen().len(), 2);
}

async fn missing_api_key_is_inconclusive(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = db
        .open_with(EngineOptions {
            verifiers: ProviderConfig::from_lookup(|_| None),
            ..Default::default()
        })
        .await;
    let spec = with_llm(
        llm(Provider::Anthropic, None, None, 1_000),
        3,
        FailPolicy::FailClosed,
    );
    let t = engine.create(task("nokey", spec)).await.unwrap().task;
    let e = engine
        .answer(t.id, ans("alice", ok_answer()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("set INLOOP_ANTHROPIC_API_KEY"),
        "{e}"
    );
    assert!(fake.seen().is_empty());
}

/// Rules run first: an answer they reject never reaches the LLM.
async fn rules_run_before_the_llm(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    let spec = with_llm(
        llm(Provider::Gemini, None, None, 5_000),
        3,
        FailPolicy::FailClosed,
    );
    let t = engine.create(task("order", spec)).await.unwrap().task;
    rejected(
        engine
            .answer(
                t.id,
                ans("alice", json!({"approved": true, "amount": 9000})),
            )
            .await,
    );
    assert!(fake.seen().is_empty());
}

// ---------------------------------------------------------------------------------------------
// concurrency: the verification lease

/// Two people answer at once while the LLM is slow: the second is told another answer is
/// being verified; exactly one answer is accepted, and no transaction was held during the call
/// (other tasks' writes go through meanwhile).
async fn one_answer_at_a_time_with_the_llm(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    let spec = with_llm(
        llm(Provider::Anthropic, None, None, 10_000),
        3,
        FailPolicy::FailClosed,
    );
    let t = engine.create(task("race", spec)).await.unwrap().task;
    fake.script([Reply::Slow(Duration::from_millis(1500))]);
    let first = {
        let e = engine.clone();
        tokio::spawn(async move { e.answer(t.id, ans("alice", ok_answer())).await })
    };
    common::eventually(
        "the first answer holds the lease",
        Duration::from_secs(5),
        || !fake.seen().is_empty(),
    )
    .await;
    let leased = engine.get(t.id).await.unwrap();
    assert!(leased.verifying_until.is_some());
    assert_eq!(leased.status, Status::Pending);
    // The row is not locked: other writes to this task and others go through at once.
    let other = engine
        .create(task("other", rules_only(3)))
        .await
        .unwrap()
        .task;
    let quick = std::time::Instant::now();
    engine
        .answer(other.id, ans("bob", ok_answer()))
        .await
        .unwrap();
    engine
        .claim(t.id, "bob", "api", &inloop_core::access::Principal::Trusted)
        .await
        .unwrap();
    engine
        .release(t.id, "bob", "api", &inloop_core::access::Principal::Trusted)
        .await
        .unwrap();
    assert!(
        quick.elapsed() < Duration::from_millis(1000),
        "writes waited for the LLM call"
    );
    let e = engine
        .answer(t.id, ans("bob", ok_answer()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "verification_pending");
    assert!(e.details()["until"].is_string());
    let done = first.await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.answered_by.as_deref()),
        (Status::Completed, Some("alice"))
    );
    assert_eq!(
        engine
            .answer(t.id, ans("bob", ok_answer()))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    assert_eq!(
        engine
            .audit(t.id)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.kind == "answer_accepted")
            .count(),
        1
    );
    chain_ok(&engine, t.id).await;
}

/// A task cancelled while its answer is with the verifier stays cancelled: the late verdict is
/// recorded but not applied.
async fn verdict_after_cancel_is_not_applied(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    let spec = with_llm(
        llm(Provider::Openai, None, None, 10_000),
        3,
        FailPolicy::FailOpen,
    );
    let t = engine.create(task("cancel", spec)).await.unwrap().task;
    fake.script([Reply::Slow(Duration::from_millis(800))]);
    let first = {
        let e = engine.clone();
        tokio::spawn(async move { e.answer(t.id, ans("alice", ok_answer())).await })
    };
    common::eventually("the call started", Duration::from_secs(5), || {
        !fake.seen().is_empty()
    })
    .await;
    engine
        .cancel(t.id, "agent", "api", Some("not needed"))
        .await
        .unwrap();
    let e = first.await.unwrap().unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert_eq!(engine.get(t.id).await.unwrap().status, Status::Cancelled);
    let rows = engine.audit(t.id).await.unwrap();
    let v = rows
        .iter()
        .find(|r| r.kind == "verification_passed" && r.data["verifier"] != "rules")
        .unwrap();
    assert_eq!(v.data["applied"], false);
    chain_ok(&engine, t.id).await;
}

/// A verifier whose process died leaves a lease that expires: a later answer takes over.
async fn an_expired_lease_is_taken_over(db: Db) {
    let fake = FakeLlm::start().await;
    let engine = open(&db, &fake).await;
    let spec = with_llm(
        llm(Provider::Gemini, None, None, 5_000),
        3,
        FailPolicy::FailClosed,
    );
    let t = engine.create(task("lease", spec)).await.unwrap().task;
    // Simulate a dead verifier: a lease that ran out a second ago.
    let past = inloop_core::model::now_ms() - 1000;
    db.raw_execute(&format!(
        "UPDATE inloop_tasks SET verify_token = 'dead', verifying_until = {past} WHERE id = '{}'",
        t.id
    ))
    .await
    .unwrap();
    let done = engine
        .answer(t.id, ans("alice", ok_answer()))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    // A live lease refuses.
    let t2 = engine
        .create(task(
            "lease-2",
            with_llm(
                llm(Provider::Gemini, None, None, 5_000),
                3,
                FailPolicy::FailClosed,
            ),
        ))
        .await
        .unwrap()
        .task;
    let future = inloop_core::model::now_ms() + 60_000;
    db.raw_execute(&format!(
        "UPDATE inloop_tasks SET verify_token = 'live', verifying_until = {future} WHERE id = '{}'",
        t2.id
    ))
    .await
    .unwrap();
    assert_eq!(
        engine
            .answer(t2.id, ans("alice", ok_answer()))
            .await
            .unwrap_err()
            .code(),
        "verification_pending"
    );
}

// ---------------------------------------------------------------------------------------------
// the agent's own verifier (SDK): verdicts through the core

fn verdict(attempts: u32, v: &str, reason: Option<&str>) -> AgentVerdict {
    AgentVerdict {
        attempts,
        verdict: v.into(),
        reason: reason.map(str::to_string),
        verifier: "sdk:check_amount".into(),
        latency_ms: 3,
        by: Some("agent-1".into()),
    }
}

async fn agent_verdict_reopens_counts_and_exhausts(db: Db) {
    let engine = db.open().await;
    let spec = Verification {
        rules: vec![],
        llm: None,
        max_attempts: 2,
        on_inconclusive: FailPolicy::FailClosed,
    };
    let t = engine.create(task("sdk-1", spec)).await.unwrap().task;
    // Nothing to judge while pending.
    assert_eq!(
        engine
            .submit_verdict(t.id, verdict(0, "reject", Some("x")))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    engine
        .answer(t.id, ans("alice", ok_answer()))
        .await
        .unwrap();
    let done = engine.await_response(t.id).await.unwrap();
    // A reject reopens the task, counts, and records the reason for the human.
    let reopened = engine
        .submit_verdict(
            t.id,
            verdict(done.attempts, "reject", Some("amount looks wrong")),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            reopened.status,
            reopened.attempts,
            reopened.response.clone()
        ),
        (Status::Pending, 1, None)
    );
    assert_eq!(reopened.rejections[0].reason, "amount looks wrong");
    assert_eq!(reopened.rejections[0].by.as_deref(), Some("alice"));
    // The same verdict again (a retried agent) is a conflict and counts nothing.
    assert_eq!(
        engine
            .submit_verdict(t.id, verdict(0, "reject", Some("x")))
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    // Inconclusive, fail-closed: reopened without counting.
    engine.answer(t.id, ans("bob", ok_answer())).await.unwrap();
    let t1 = engine
        .submit_verdict(
            t.id,
            verdict(1, "inconclusive", Some("verifier raised ValueError")),
        )
        .await
        .unwrap();
    assert_eq!((t1.status, t1.attempts), (Status::Pending, 1));
    // Pass keeps the answer.
    engine.answer(t.id, ans("bob", ok_answer())).await.unwrap();
    let t2 = engine
        .submit_verdict(t.id, verdict(1, "pass", None))
        .await
        .unwrap();
    assert_eq!(t2.status, Status::Completed);
    // ... and a reject on the last attempt ends the task.
    let e = engine
        .submit_verdict(t.id, verdict(1, "reject", Some("second thoughts")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "verification_exhausted");
    assert_eq!(
        e.details()["reasons"],
        json!(["amount looks wrong", "second thoughts"])
    );
    assert_eq!(
        engine.await_response(t.id).await.unwrap_err().code(),
        "verification_exhausted"
    );
    // Bad verdicts are invalid arguments.
    for (v, r) in [
        ("maybe", Some("x")),
        ("reject", None),
        ("inconclusive", Some("  ")),
    ] {
        assert_eq!(
            engine
                .submit_verdict(t.id, verdict(1, v, r))
                .await
                .unwrap_err()
                .code(),
            "invalid_argument"
        );
    }
    assert_eq!(
        kinds(&engine, t.id).await,
        [
            "created",
            "answer_accepted",
            "verification_rejected",
            "answer_reopened",
            "answer_accepted",
            "verification_inconclusive",
            "answer_reopened",
            "answer_accepted",
            "verification_passed",
            "verification_rejected",
            "verification_exhausted"
        ]
    );
    chain_ok(&engine, t.id).await;
}

async fn agent_verdict_fail_open_keeps_the_answer(db: Db) {
    let engine = db.open().await;
    let spec = Verification {
        rules: vec![],
        llm: None,
        max_attempts: 3,
        on_inconclusive: FailPolicy::FailOpen,
    };
    let t = engine.create(task("sdk-2", spec)).await.unwrap().task;
    engine
        .answer(t.id, ans("alice", ok_answer()))
        .await
        .unwrap();
    let t1 = engine
        .submit_verdict(t.id, verdict(0, "inconclusive", Some("boom")))
        .await
        .unwrap();
    assert_eq!((t1.status, t1.attempts), (Status::Completed, 0));
}

conformance!(
    malformed_specs_are_invalid_arguments,
    spec_is_stored_and_in_the_digest,
    rules_reject_count_and_exhaust,
    rules_pass_is_audited_and_accepted,
    llm_pass_on_every_provider,
    llm_reject_then_pass_on_every_provider,
    llm_reject_until_exhausted_on_every_provider,
    llm_inconclusive_fail_open_and_closed_on_every_provider,
    provider_failures_are_inconclusive,
    rate_limit_within_the_timeout_is_retried,
    missing_api_key_is_inconclusive,
    rules_run_before_the_llm,
    one_answer_at_a_time_with_the_llm,
    verdict_after_cancel_is_not_applied,
    an_expired_lease_is_taken_over,
    agent_verdict_reopens_counts_and_exhausts,
    agent_verdict_fail_open_keeps_the_answer,
);
