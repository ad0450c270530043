//! Completion callbacks (`callback_url`) on both backends: one signed `task.ended` event per
//! end (answered, timed out, cancelled, verification exhausted) through the outbox, retries,
//! the allow-list at creation (REST API, remote mode, an engine that knows it) and in the
//! dispatcher (a disallowed URL is never POSTed to). A real loopback receiver checks every
//! signature with the core's reference check.
//!
//!   cargo test -p inloop-core --test callbacks

mod common;
#[path = "common/hook.rs"]
mod hook;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{Db, serve_engine};
use hook::{Behaviour, Hook};
use inloop_core::channels::callback::AllowList;
use inloop_core::channels::{self, Channels, Settings};
use inloop_core::engine::AgentVerdict;
use inloop_core::remote::RemoteEngine;
use inloop_core::server::ServerOptions;
use inloop_core::store::outbox::Delivery;
use inloop_core::verify::{FailPolicy, Rule, Verification};
use inloop_core::{Answer, Engine, Error, NewTask, Status};
use serde_json::{Value, json};

fn task(key: &str, callback: Option<&str>) -> NewTask {
    NewTask {
        title: format!("Approve {key}?"),
        payload: json!({"order": key, "amount": 50}),
        response_schema: json!({"type": "object",
            "properties": {"approved": {"type": "boolean"}, "amount": {"type": "number"}},
            "required": ["approved"]}),
        key: Some(key.into()),
        callback_url: callback.map(str::to_string),
        ..Default::default()
    }
}

fn approve() -> Answer {
    Answer {
        response: json!({"approved": true, "amount": 50}),
        by: "alice".into(),
        channel: "email".into(),
    }
}

/// The origin of a receiver: `http://127.0.0.1:PORT`.
fn origin(hook: &Hook) -> String {
    hook.url.trim_end_matches("/hook").to_string()
}

/// Channels whose callbacks go to what `allow` permits, signed with `secret` (none: callbacks
/// off), with fast retries.
fn channels_with(allow: Option<&str>, secret: &str, extra: &[(&str, &str)]) -> Arc<Channels> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(a) = allow {
        env.insert("INLOOP_CALLBACK_ALLOW".into(), a.into());
        env.insert("INLOOP_CALLBACK_SECRET".into(), secret.into());
    }
    env.insert("INLOOP_CHANNEL_RETRY_BASE_MS".into(), "20".into());
    env.insert("INLOOP_CHANNEL_RETRY_MAX_SECS".into(), "1".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Arc::new(Channels::new(Settings::resolve(None, &env, None).unwrap()).unwrap())
}

/// Channels delivering callbacks to `hook` (its origin allowed, its secret signing).
fn channels_for(hook: &Hook) -> Arc<Channels> {
    channels_with(Some(&format!("{}/", origin(hook))), &hook.secret, &[])
}

/// Runs `dispatch_once` until `done` holds (bounded).
async fn pump(engine: &Engine, ch: &Channels, mut done: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "outbox did not settle"
        );
        if channels::dispatch_once(engine, ch, "w").await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs the dispatcher a few more rounds (to let a double delivery show).
async fn settle(engine: &Engine, ch: &Channels) {
    for _ in 0..5 {
        channels::dispatch_once(engine, ch, "w").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn callback_rows(engine: &Engine, id: uuid::Uuid) -> Vec<Delivery> {
    channels::deliveries(engine, id)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.channel == "callback")
        .collect()
}

async fn all_settled(engine: &Engine, ids: &[uuid::Uuid]) -> bool {
    for id in ids {
        if callback_rows(engine, *id)
            .await
            .iter()
            .any(|d| d.state == "pending")
        {
            return false;
        }
    }
    true
}

async fn audit_kinds(engine: &Engine, id: uuid::Uuid, kind: &str) -> Vec<Value> {
    engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| json!({"channel": e.channel, "data": e.data}))
        .collect()
}

fn always_reject(max: u32) -> Verification {
    Verification {
        rules: vec![Rule {
            name: "never".into(),
            when: None,
            check: json!({"==": [1, 2]}),
            message: "no answer passes".into(),
        }],
        llm: None,
        max_attempts: max,
        on_inconclusive: FailPolicy::FailClosed,
    }
}

// ---------------------------------------------------------------------------------------------

/// Answered, timed out, cancelled and verification-exhausted tasks each send exactly one
/// signed `task.ended` to their callback, with the final task; a pending task sends nothing
/// (callbacks carry only the end), and a replayed key keeps the first callback.
async fn each_end_reaches_the_callback_once(db: Db) {
    let hook = Hook::start(Behaviour::default()).await;
    let ch = channels_for(&hook);
    let engine = db.open().await;
    let url = |what: &str| format!("{}?end={what}", hook.url);
    let answered = engine
        .create(task("cb-answered", Some(&url("completed"))))
        .await
        .unwrap()
        .task;
    assert_eq!(
        answered.callback_url.as_deref(),
        Some(url("completed").as_str())
    );
    // Not part of the digest: the same key with another callback is the same task, unchanged.
    let replay = engine
        .create(task("cb-answered", Some("https://elsewhere.example/x")))
        .await
        .unwrap();
    assert!(!replay.created);
    assert_eq!(replay.task.callback_url, answered.callback_url);
    let created = &engine.audit(answered.id).await.unwrap()[0];
    assert_eq!(created.data["callback_url"], json!(url("completed")));

    let mut t = task("cb-timeout", Some(&url("timed_out")));
    t.timeout_ms = Some(1);
    let timing_out = engine.create(t).await.unwrap().task;
    let cancelled = engine
        .create(task("cb-cancelled", Some(&url("cancelled"))))
        .await
        .unwrap()
        .task;
    let mut t = task("cb-exhausted", Some(&url("verification_exhausted")));
    t.verification = Some(always_reject(1));
    let exhausted = engine.create(t).await.unwrap().task;
    let pending = engine
        .create(task("cb-pending", Some(&url("pending"))))
        .await
        .unwrap()
        .task;
    let plain = engine.create(task("cb-none", None)).await.unwrap().task;
    assert_eq!(plain.callback_url, None);

    // Nothing is sent while tasks are pending: no row exists before the end.
    settle(&engine, &ch).await;
    assert!(hook.hits().is_empty());
    assert!(callback_rows(&engine, pending.id).await.is_empty());

    engine.answer(answered.id, approve()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        engine.expire(timing_out.id).await.unwrap().status,
        Status::TimedOut
    );
    engine
        .cancel(cancelled.id, "bob", "api", Some("not needed"))
        .await
        .unwrap();
    let e = engine.answer(exhausted.id, approve()).await.unwrap_err();
    assert_eq!(e.code(), "verification_exhausted");
    let ended = [answered.id, timing_out.id, cancelled.id, exhausted.id];
    pump(&engine, &ch, async || all_settled(&engine, &ended).await).await;
    settle(&engine, &ch).await;

    let hits = hook.hits();
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert!(
        hits.iter().all(|h| h.verified && h.status == 204),
        "{hits:?}"
    );
    assert_eq!(hits.iter().map(|h| &h.id).collect::<HashSet<_>>().len(), 4);
    assert!(hook.accepted().values().all(|n| *n == 1));
    for h in &hits {
        assert_eq!(h.body["type"], "task.ended", "{h:?}");
        let t = &h.body["data"]["task"];
        let url = t["callback_url"].as_str().unwrap();
        let expected = url.split("end=").nth(1).unwrap();
        assert_eq!(t["status"], expected, "{h:?}");
        assert_eq!(h.body["timestamp"], t["ended_at"], "{h:?}");
    }
    let done = hits
        .iter()
        .find(|h| h.body["data"]["task"]["status"] == "completed")
        .unwrap();
    assert_eq!(done.body["data"]["task"]["response"]["approved"], true);
    assert_eq!(done.body["data"]["task"]["answered_via"], "email");
    for id in ended {
        let rows = callback_rows(&engine, id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        let d = &rows[0];
        assert_eq!(
            (d.event.as_str(), d.state.as_str(), d.attempts),
            ("ended", "done", 1)
        );
        assert!(hits.iter().any(|h| h.id == d.idempotency_key));
        let delivered = audit_kinds(&engine, id, "delivered").await;
        assert_eq!(delivered.len(), 1, "{delivered:?}");
        assert_eq!(delivered[0]["channel"], "callback");
        assert!(engine.verify_audit(id).await.unwrap().ok);
    }
    assert!(callback_rows(&engine, pending.id).await.is_empty());
    assert!(
        channels::deliveries(&engine, plain.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A receiver that fails twice gets the event on the third attempt, exactly once, under one id.
async fn a_failing_callback_gets_it_on_the_third_attempt(db: Db) {
    let hook = Hook::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let ch = channels_for(&hook);
    let engine = db.open().await;
    let id = engine
        .create(task("cb-retry", Some(&hook.url)))
        .await
        .unwrap()
        .task
        .id;
    engine.cancel(id, "bob", "api", None).await.unwrap();
    pump(&engine, &ch, async || all_settled(&engine, &[id]).await).await;
    settle(&engine, &ch).await;
    let hits = hook.hits();
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        vec![500, 500, 204]
    );
    assert!(hits.iter().all(|h| h.verified));
    assert_eq!(hits.iter().map(|h| &h.id).collect::<HashSet<_>>().len(), 1);
    assert_eq!(
        hook.accepted().values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let d = &callback_rows(&engine, id).await[0];
    assert_eq!((d.state.as_str(), d.attempts), ("done", 3));
    let attempts = channels::attempts(&engine, d.id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        vec!["retry", "retry", "ok"]
    );
    assert_eq!(audit_kinds(&engine, id, "delivered").await.len(), 1);
    assert!(audit_kinds(&engine, id, "delivery_failed").await.is_empty());
}

/// A receiver that never answers 2xx: past the horizon the callback fails with
/// `delivery_failed`, naming the last error.
async fn a_callback_past_the_horizon_fails(db: Db) {
    let hook = Hook::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let ch = channels_with(
        Some(&format!("{}/", origin(&hook))),
        &hook.secret,
        &[("INLOOP_CHANNEL_RETRY_HORIZON_SECS", "1")],
    );
    let engine = db.open().await;
    let id = engine
        .create(task("cb-horizon", Some(&hook.url)))
        .await
        .unwrap()
        .task
        .id;
    engine.cancel(id, "bob", "api", None).await.unwrap();
    pump(&engine, &ch, async || all_settled(&engine, &[id]).await).await;
    let d = &callback_rows(&engine, id).await[0];
    assert_eq!(d.state, "failed");
    assert!(d.attempts >= 2, "{d:?}");
    assert!(
        d.last_error.as_deref().unwrap().contains("gave up after"),
        "{d:?}"
    );
    let failed = audit_kinds(&engine, id, "delivery_failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["channel"], "callback");
    assert!(
        failed[0]["data"]["error"].as_str().unwrap().contains("500"),
        "{failed:?}"
    );
}

/// The dispatcher POSTs only to URLs its own allow-list permits: a task created where the
/// list is unknown (direct mode) with another URL fails at once with a clear reason and the
/// receiver sees nothing, even when it is the allowed receiver under another host name; a
/// server without callbacks configured sends none. An engine handle that knows the list
/// refuses such URLs at creation.
async fn disallowed_callbacks_are_never_posted(db: Db) {
    let allowed = Hook::start(Behaviour::default()).await;
    let stranger = Hook::start(Behaviour::default()).await;
    let ch = channels_with(
        Some(&format!("{}/hook", origin(&allowed))),
        &allowed.secret,
        &[],
    );
    let engine = db.open().await; // direct mode: no allow-list here
    let port = origin(&allowed).rsplit(':').next().unwrap().to_string();
    let urls = [
        stranger.url.clone(),
        format!("http://localhost:{port}/hook"),
        format!("{}/hooks", origin(&allowed)),
        format!("{}/other", origin(&allowed)),
    ];
    let mut ids = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        let id = engine
            .create(task(&format!("cb-refused-{i}"), Some(u)))
            .await
            .unwrap()
            .task
            .id;
        engine.cancel(id, "bob", "api", None).await.unwrap();
        ids.push(id);
    }
    pump(&engine, &ch, async || all_settled(&engine, &ids).await).await;
    settle(&engine, &ch).await;
    assert!(stranger.hits().is_empty(), "{:?}", stranger.hits());
    assert!(allowed.hits().is_empty(), "{:?}", allowed.hits());
    for (id, url) in ids.iter().zip(&urls) {
        let d = &callback_rows(&engine, *id).await[0];
        assert_eq!((d.state.as_str(), d.attempts), ("failed", 1), "{d:?}");
        let why = d.last_error.as_deref().unwrap();
        assert!(
            why.contains("not allowed") && why.contains("nothing was sent") && why.contains(url),
            "{why}"
        );
        let failed = audit_kinds(&engine, *id, "delivery_failed").await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["channel"], "callback");
        assert_eq!(failed[0]["data"]["target"], json!(url));
    }

    // The allowed one is delivered by the same dispatcher.
    let ok = engine
        .create(task("cb-allowed", Some(&allowed.url)))
        .await
        .unwrap()
        .task
        .id;
    engine.cancel(ok, "bob", "api", None).await.unwrap();
    pump(&engine, &ch, async || all_settled(&engine, &[ok]).await).await;
    assert_eq!(allowed.hits().len(), 1);
    assert!(allowed.hits()[0].verified);

    // A server whose callbacks are not configured sends none.
    let off = channels_with(None, "", &[]);
    let id = engine
        .create(task("cb-off", Some(&allowed.url)))
        .await
        .unwrap()
        .task
        .id;
    engine.cancel(id, "bob", "api", None).await.unwrap();
    pump(&engine, &off, async || all_settled(&engine, &[id]).await).await;
    let d = &callback_rows(&engine, id).await[0];
    assert_eq!(d.state, "failed");
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("callbacks are not configured on this server"),
        "{d:?}"
    );
    assert_eq!(allowed.hits().len(), 1);

    // A handle that knows the list refuses at creation, and writes nothing.
    let strict = engine.clone().with_callback_allow(ch.callback_allow());
    for (i, u) in urls.iter().enumerate() {
        let e = strict
            .create(task(&format!("cb-strict-{i}"), Some(u)))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains("not allowed"), "{e}");
        assert!(
            engine
                .get_by_key("default", &format!("cb-strict-{i}"))
                .await
                .is_err()
        );
    }
    let e = engine
        .clone()
        .with_callback_allow(AllowList::default())
        .create(task("cb-none-allowed", Some(&allowed.url)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("delivers no callbacks"), "{e}");
    strict
        .create(task("cb-strict-ok", Some(&allowed.url)))
        .await
        .unwrap();
}

/// Over the REST API (`inloop serve`'s router with its channels) and remote mode: a
/// disallowed, malformed, non-http(s) or oversize `callback_url` is `422 invalid_argument`
/// with a clear message and creates nothing; an allowed one is stored and, when the task is
/// cancelled through the API, the server's own dispatcher POSTs the signed end.
async fn the_api_refuses_disallowed_callbacks(db: Db) {
    let hook = Hook::start(Behaviour::default()).await;
    let ch = channels_with(
        Some(&format!("{}/", origin(&hook))),
        &hook.secret,
        &[("INLOOP_CHANNEL_POLL_MS", "20")],
    );
    let engine = db.open().await;
    let (_, key) = inloop_core::apikeys::create_api_key(&engine, "agent", "default", false)
        .await
        .unwrap();
    let server = serve_engine(
        engine.clone(),
        ServerOptions {
            channels: Some(Arc::clone(&ch)),
            ..Default::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let create = |body: Value| {
        let req = http
            .post(format!("{}/api/v1/tasks", server.base))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let body = |k: &str, url: Value| {
        let mut b = serde_json::to_value(task(k, None)).unwrap();
        b["callback_url"] = url;
        b
    };
    let long = format!("{}/{}", origin(&hook), "a".repeat(2100));
    let port = origin(&hook).rsplit(':').next().unwrap().to_string();
    for (url, why) in [
        (
            "https://engine.internal.evil.com/hooks/".to_string(),
            "not allowed",
        ),
        (format!("http://localhost:{port}/hook"), "not allowed"),
        ("not a url".to_string(), "spaces"),
        ("/relative".to_string(), "absolute URL"),
        ("ftp://127.0.0.1/x".to_string(), "http or https"),
        (format!("{}/x#frag", origin(&hook)), "fragment"),
        (long, "2048"),
    ] {
        let (status, v) = create(body("api-bad", json!(url))).await;
        assert_eq!(status, 422, "{url}: {v}");
        assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("callback_url") && m.contains(why), "{url}: {m}");
    }
    let (status, v) = create({
        let mut b = body("api-bad", Value::Null);
        b["notify"] = json!(["callback:https://x.example/"]);
        b
    })
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("callback_url")
    );
    assert!(engine.get_by_key("default", "api-bad").await.is_err());

    // Stored normalized: `.` segments resolved.
    let given = format!("{}/./x/../hook?task=API", origin(&hook));
    let (status, v) = create(body("api-ok", json!(given))).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["task"]["callback_url"],
        json!(format!("{}?task=API", hook.url))
    );
    let id = v["task"]["id"].as_str().unwrap().to_string();

    // Remote mode goes through the same check.
    let remote = RemoteEngine::new(&server.base, &key).unwrap();
    let e = remote
        .create(task("remote-bad", Some("https://evil.example/")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(e.to_string().contains("not allowed"), "{e}");
    let t = remote
        .create(task("remote-ok", Some(&hook.url)))
        .await
        .unwrap()
        .task;
    assert_eq!(t.callback_url.as_deref(), Some(hook.url.as_str()));

    // Cancelled through the API: the server's dispatcher delivers both ends, signed.
    for id in [id.clone(), t.id.to_string()] {
        let r = http
            .post(format!("{}/api/v1/tasks/{id}/cancel", server.base))
            .bearer_auth(&key)
            .json(&json!({"reason": "done here"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    common::eventually("two callbacks", Duration::from_secs(20), || {
        hook.hits().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits = hook.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(
        hits.iter()
            .all(|h| h.verified && h.body["type"] == "task.ended")
    );
    assert!(
        hits.iter()
            .all(|h| h.body["data"]["task"]["status"] == "cancelled")
    );
    server.stop().await;

    // A server with channels but no [callbacks]: every callback is refused at creation.
    let plain = serve_engine(
        engine.clone(),
        ServerOptions {
            channels: Some(channels_with(None, "", &[])),
            ..Default::default()
        },
    )
    .await;
    let r = http
        .post(format!("{}/api/v1/tasks", plain.base))
        .bearer_auth(&key)
        .json(&body("api-off", json!(hook.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delivers no callbacks"),
        "{v}"
    );
    plain.stop().await;
}

/// A completed task that the agent's own verifier sends back ends again: each end is its own
/// event (its own id), and the last one is the outcome, down to `verification_exhausted`
/// straight from `completed`.
async fn a_reopened_task_reports_each_end(db: Db) {
    let hook = Hook::start(Behaviour::default()).await;
    let ch = channels_for(&hook);
    let engine = db.open().await;
    let mut t = task("cb-reopen", Some(&hook.url));
    t.verification = Some(Verification {
        rules: vec![],
        llm: None,
        max_attempts: 2,
        on_inconclusive: FailPolicy::FailClosed,
    });
    let id = engine.create(t).await.unwrap().task.id;
    let reject = |attempts| AgentVerdict {
        attempts,
        verdict: "reject".into(),
        reason: Some("the amount looks wrong".into()),
        verifier: "sdk:check".into(),
        latency_ms: 1,
        by: None,
    };
    let delivered = async |n: usize| {
        pump(&engine, &ch, async || hook.hits().len() >= n).await;
    };
    let first = engine.answer(id, approve()).await.unwrap();
    delivered(1).await;
    let t = engine
        .submit_verdict(id, reject(first.attempts))
        .await
        .unwrap();
    assert_eq!(t.status, Status::Pending);
    let second = engine.answer(id, approve()).await.unwrap();
    assert_eq!(second.status, Status::Completed);
    delivered(2).await;
    let e = engine.submit_verdict(id, reject(second.attempts)).await;
    let t = engine.get(id).await.unwrap();
    assert_eq!(t.status, Status::VerificationExhausted, "{e:?}");
    delivered(3).await;
    settle(&engine, &ch).await;
    let hits = hook.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.iter().all(|h| h.verified && h.status == 204));
    assert_eq!(hits.iter().map(|h| &h.id).collect::<HashSet<_>>().len(), 3);
    let statuses: Vec<_> = hits
        .iter()
        .map(|h| {
            h.body["data"]["task"]["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["completed", "completed", "verification_exhausted"]
    );
    let rows = callback_rows(&engine, id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("done", 3));
    assert_eq!(rows[0].idempotency_key, hits[2].id);
    assert_eq!(audit_kinds(&engine, id, "delivered").await.len(), 3);
    assert!(engine.verify_audit(id).await.unwrap().ok);
}

conformance!(
    each_end_reaches_the_callback_once,
    a_failing_callback_gets_it_on_the_third_attempt,
    a_callback_past_the_horizon_fails,
    disallowed_callbacks_are_never_posted,
    the_api_refuses_disallowed_callbacks,
    a_reopened_task_reports_each_end,
);
