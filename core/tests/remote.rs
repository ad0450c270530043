//! Remote mode: the conformance scenarios that an agent without database access relies on,
//! run through `RemoteEngine` (what the SDKs use with `INLOOP_URL`) against a real
//! `inloop serve` on 127.0.0.1, on both backends. Each mirrors the direct-mode scenario of the
//! same name in `conformance.rs`; answers come from a second key (a reviewer's integration) or
//! from another process on the database.

mod common;
#[path = "common/cut_proxy.rs"]
mod cut_proxy;

use std::collections::HashSet;
use std::time::Duration;

use common::{Db, Served, serve_engine};
use inloop_core::apikeys::create_api_key;
use inloop_core::remote::RemoteEngine;
use inloop_core::server::ServerOptions;
use inloop_core::{Answer, Engine, Error, ListFilter, NewTask, Status};
use serde_json::{Value, json};

struct Remote {
    /// The agent's key: creates and waits, may not answer.
    agent: RemoteEngine,
    /// A key allowed to answer (a reviewer's tool).
    reviewer: RemoteEngine,
    /// Direct access to the same database (another process, as far as the server knows).
    direct: Engine,
    server: Served,
}

async fn start(db: &Db) -> Remote {
    let engine = db.open().await;
    let (_, agent) = create_api_key(&engine, "agent", "default", false)
        .await
        .unwrap();
    let (_, reviewer) = create_api_key(&engine, "reviewer", "default", true)
        .await
        .unwrap();
    let server = serve_engine(engine, ServerOptions::default()).await;
    Remote {
        agent: RemoteEngine::new(&server.base, &agent).unwrap(),
        reviewer: RemoteEngine::new(&server.base, &reviewer).unwrap(),
        direct: db.open().await,
        server,
    }
}

impl Remote {
    async fn shutdown(self) {
        self.server.stop().await;
        self.direct.close().await;
    }
}

fn schema() -> Value {
    json!({"type": "object", "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]})
}

fn task(key: &str) -> NewTask {
    NewTask {
        key: Some(key.into()),
        title: "Approve the refund?".into(),
        payload: json!({"order_id": "A-1"}),
        response_schema: schema(),
        ..Default::default()
    }
}

fn approve(by: &str) -> Answer {
    Answer {
        response: json!({"approved": true}),
        by: by.into(),
        channel: "api".into(),
    }
}

/// Same key, same task; the same key for another request is `key_reused`.
async fn create_is_idempotent_by_key(db: Db) {
    let r = start(&db).await;
    let a = r.agent.create(task("k")).await.unwrap();
    let b = r.agent.create(task("k")).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.task.id, b.task.id);
    let other = NewTask {
        title: "Something else?".into(),
        ..task("k")
    };
    assert!(matches!(
        r.agent.create(other).await,
        Err(Error::KeyReused { .. })
    ));
    r.shutdown().await;
}

/// Twenty agents creating one key at once get one task.
async fn concurrent_creators_get_one_task(db: Db) {
    let r = start(&db).await;
    let calls = (0..20).map(|_| r.agent.create(task("race")));
    let results = futures_util::future::join_all(calls).await;
    let ids: HashSet<_> = results
        .iter()
        .map(|c| c.as_ref().unwrap().task.id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|c| c.as_ref().unwrap().created)
            .count(),
        1
    );
    r.shutdown().await;
}

/// Twenty answers at once: exactly one accepted, the others `conflict` naming the winner.
async fn concurrent_answers_accept_exactly_one(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("answers")).await.unwrap().task.id;
    let calls = (0..20).map(|i| r.reviewer.answer(id, approve(&format!("p{i}"))));
    let results = futures_util::future::join_all(calls).await;
    let winners: Vec<_> = results.iter().filter_map(|x| x.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    let by = winners[0].answered_by.clone().unwrap();
    for e in results.iter().filter_map(|x| x.as_ref().err()) {
        match e {
            Error::Conflict { by: Some(b), .. } => assert_eq!(b, &by),
            other => panic!("expected conflict, got {other:?}"),
        }
    }
    let kinds: Vec<String> = r
        .agent
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "answer_accepted").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "answer_refused").count(), 19);
    r.shutdown().await;
}

/// An invalid answer: field errors, the task stays pending, the refusal is audited; the
/// agent's own key may not answer at all.
async fn invalid_answer_is_refused_and_audited(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("invalid")).await.unwrap().task.id;
    let bad = Answer {
        response: json!({"approved": "yes"}),
        ..approve("alice")
    };
    match r.reviewer.answer(id, bad).await {
        Err(Error::InvalidAnswer { errors }) => assert_eq!(errors[0].path, "/approved"),
        other => panic!("expected invalid_answer, got {other:?}"),
    }
    assert!(matches!(
        r.agent.answer(id, approve("agent")).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(r.agent.get(id).await.unwrap().status, Status::Pending);
    let kinds: Vec<String> = r
        .agent
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "answer_refused", "answer_refused"]);
    r.shutdown().await;
}

/// A remote waiter wakes when another process answers on the database.
async fn waiter_wakes_on_answer_from_another_engine(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("wake")).await.unwrap().task.id;
    let agent = r.agent.clone();
    let waiting = tokio::spawn(async move { agent.await_response(id).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.direct.answer(id, approve("alice")).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(done.response, Some(json!({"approved": true})));
    r.shutdown().await;
}

/// A wait with a limit returns the task still pending.
async fn wait_with_limit_returns_pending_task(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("limit")).await.unwrap().task.id;
    let t = r
        .agent
        .wait(id, Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(t.status, Status::Pending);
    r.shutdown().await;
}

/// The deadline ends the wait with `timed_out`; a late answer is a conflict saying so.
async fn timeout_ends_the_wait_and_refuses_late_answers(db: Db) {
    let r = start(&db).await;
    let id = r
        .agent
        .create(NewTask {
            timeout_ms: Some(300),
            ..task("deadline")
        })
        .await
        .unwrap()
        .task
        .id;
    assert!(matches!(
        r.agent.await_response(id).await,
        Err(Error::TimedOut { .. })
    ));
    match r.reviewer.answer(id, approve("late")).await {
        Err(Error::Conflict { status, .. }) => assert_eq!(status, Status::TimedOut),
        other => panic!("expected conflict, got {other:?}"),
    }
    r.shutdown().await;
}

/// A cancel ends the wait with `cancelled` (who, why).
async fn cancel_ends_the_task(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("cancel")).await.unwrap().task.id;
    let agent = r.agent.clone();
    let waiting = tokio::spawn(async move { agent.await_response(id).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.agent
        .cancel(id, "agent", "api", Some("not needed"))
        .await
        .unwrap();
    match waiting.await.unwrap() {
        Err(Error::Cancelled { reason, .. }) => assert_eq!(reason.as_deref(), Some("not needed")),
        other => panic!("expected cancelled, got {other:?}"),
    }
    assert!(matches!(
        r.agent.cancel(id, "agent", "api", None).await,
        Err(Error::Conflict { .. })
    ));
    r.shutdown().await;
}

/// Pages walk every task once, newest first; filters apply.
async fn list_pagination_walks_everything_once(db: Db) {
    let r = start(&db).await;
    for i in 0..12 {
        r.agent.create(task(&format!("page-{i:02}"))).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = r
            .agent
            .list(ListFilter {
                limit: Some(5),
                cursor: cursor.clone(),
                key_prefix: Some("page-".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|t| t.key.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..12).rev().map(|i| format!("page-{i:02}")).collect();
    assert_eq!(seen, expected);
    r.shutdown().await;
}

/// The audit chain read through the API verifies.
async fn audit_chain_is_ordered_verified(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("audit")).await.unwrap().task.id;
    r.reviewer.answer(id, approve("alice")).await.unwrap();
    let check = r.agent.verify_audit(id).await.unwrap();
    assert!(check.ok);
    assert_eq!(check.rows, 2);
    r.shutdown().await;
}

/// `ask` creates and waits; asking again with the key returns the same answer at once.
async fn ask_creates_waits_and_replays(db: Db) {
    let r = start(&db).await;
    let agent = r.agent.clone();
    let asking = tokio::spawn(async move { agent.ask(task("ask")).await });
    let id = loop {
        if let Ok(t) = r.direct.get_by_key("default", "ask").await {
            break t.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    r.reviewer.answer(id, approve("alice")).await.unwrap();
    let first = asking.await.unwrap().unwrap();
    let again = r.agent.ask(task("ask")).await.unwrap();
    assert_eq!((first.id, again.id), (id, id));
    assert_eq!(again.answered_by.as_deref(), Some("alice"));
    r.shutdown().await;
}

/// Lookups name the key's namespace; another is refused, never silently swapped.
async fn namespaces_are_the_keys_own(db: Db) {
    let r = start(&db).await;
    let id = r.agent.create(task("ns")).await.unwrap().task.id;
    assert_eq!(r.agent.get_by_key("default", "ns").await.unwrap().id, id);
    assert!(matches!(
        r.agent.get_by_key("other", "ns").await,
        Err(Error::Forbidden(_))
    ));
    let listed = r
        .agent
        .list(ListFilter {
            namespace: Some("other".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(listed, Err(Error::Forbidden(_))), "{listed:?}");
    let elsewhere = NewTask {
        namespace: Some("other".into()),
        ..task("elsewhere")
    };
    assert!(matches!(
        r.agent.create(elsewhere).await,
        Err(Error::Forbidden(_))
    ));
    r.shutdown().await;
}

/// Unknown ids are `not_found`.
async fn unknown_ids_are_not_found(db: Db) {
    let r = start(&db).await;
    let id = uuid::Uuid::now_v7();
    assert!(matches!(r.agent.get(id).await, Err(Error::NotFound(_))));
    assert!(matches!(
        r.reviewer.answer(id, approve("a")).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        r.agent.wait(id, None).await,
        Err(Error::NotFound(_))
    ));
    r.shutdown().await;
}

/// HTTP/2: 300 long polls from one client, more than hyper's default of 200 streams per
/// connection, are all parked on the server at once over one TCP connection (counted by a
/// proxy between them), and every one resumes when answered.
async fn many_waits_share_one_connection(db: Db) {
    let engine = db.open().await;
    let (_, agent) = create_api_key(&engine, "agent", "default", false)
        .await
        .unwrap();
    let server = serve_engine(engine.clone(), ServerOptions::default()).await;
    let upstream = server.base.trim_start_matches("http://").to_string();
    let proxy = cut_proxy::CutProxy::start(upstream).await;
    let agent = RemoteEngine::new(&format!("http://{}", proxy.addr), &agent).unwrap();
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(agent.create(task(&format!("m-{i}"))).await.unwrap().task.id);
    }
    assert!(agent.multiplexed(), "inloop serve speaks HTTP/2");
    let waits: Vec<_> = ids
        .iter()
        .map(|id| {
            let (agent, id) = (agent.clone(), *id);
            tokio::spawn(async move { agent.wait(id, None).await })
        })
        .collect();
    common::eventually(
        "300 waits parked on the server",
        Duration::from_secs(30),
        || engine.parked() >= 300,
    )
    .await;
    for id in &ids {
        engine.answer(*id, approve("ann")).await.unwrap();
    }
    for w in waits {
        assert_eq!(w.await.unwrap().unwrap().status, Status::Completed);
    }
    assert_eq!(proxy.accepted(), 1, "one connection carried every call");
    server.stop().await;
}

conformance!(
    create_is_idempotent_by_key,
    concurrent_creators_get_one_task,
    concurrent_answers_accept_exactly_one,
    invalid_answer_is_refused_and_audited,
    waiter_wakes_on_answer_from_another_engine,
    wait_with_limit_returns_pending_task,
    timeout_ends_the_wait_and_refuses_late_answers,
    cancel_ends_the_task,
    list_pagination_walks_everything_once,
    audit_chain_is_ordered_verified,
    ask_creates_waits_and_replays,
    unknown_ids_are_not_found,
    namespaces_are_the_keys_own,
    many_waits_share_one_connection,
);

/// A server (or proxy) that speaks only HTTP/1.1: the first call's HTTP/2 probe fails, and
/// every call goes over HTTP/1.1, answered as usual.
#[tokio::test]
async fn an_http1_only_server_is_spoken_to_in_http1() {
    // hyper's HTTP/1.1-only connection (axum's serve would speak HTTP/2 too).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_req| async {
                let body = r#"{"error": {"code": "not_found", "message": "no such task"}}"#;
                let resp = hyper::Response::builder()
                    .status(404)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let remote = RemoteEngine::new(&base, "ilk_test").unwrap();
    for _ in 0..3 {
        let got = remote.get(uuid::Uuid::now_v7()).await;
        // The server's answer came back, whole (its error body decoded).
        assert!(
            matches!(&got, Err(e) if e.code() == "not_found" && e.to_string().contains("no such task")),
            "{got:?}"
        );
    }
    assert!(!remote.multiplexed());
    server.abort();
}
