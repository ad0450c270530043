//! The conformance suite: every rule of the engine, checked once, against both backends.
//!
//! Each test is an `async fn(Db)`; the `conformance!` list at the bottom instantiates it as
//! `sqlite::NAME` (a fresh SQLite file) and `postgres::NAME` (a fresh database on the server
//! named by `INLOOP_TEST_PG_URL`; skipped without it unless `INLOOP_REQUIRE_PG=1`).
//!
//!   cargo test -p inloop-core --test conformance                  # SQLite only
//!   PGDIR=$(mktemp -d); trap 'scripts/pg.sh stop $PGDIR' EXIT
//!   INLOOP_TEST_PG_URL=$(scripts/pg.sh start $PGDIR) INLOOP_REQUIRE_PG=1 \
//!       cargo test -p inloop-core --test conformance               # both
//!
//! Timing bounds are deliberately generous (a wake within 2 s): this checks behaviour, the
//! benchmarks check speed. Nothing sleeps to synchronise except bounded polling loops.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Db, eventually};
use inloop_core::audit::GENESIS;
use inloop_core::model::{format_ms, now_ms};
use inloop_core::store::Backend;
use inloop_core::{Answer, Engine, Error, ListFilter, NewTask, Status, Task};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// helpers

/// The response schema most tests use: `{"approved": bool, ...}`.
fn approval_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
        "required": ["approved"]
    })
}

fn task(key: &str) -> NewTask {
    NewTask {
        key: Some(key.into()),
        title: "Approve the refund?".into(),
        payload: json!({"order_id": "A-1", "amount": 500.0}),
        response_schema: approval_schema(),
        ..Default::default()
    }
}

fn in_ns(ns: &str, key: &str) -> NewTask {
    NewTask {
        namespace: Some(ns.into()),
        ..task(key)
    }
}

fn answer(by: &str, response: Value) -> Answer {
    Answer {
        response,
        by: by.into(),
        channel: "api".into(),
    }
}

fn approve(by: &str) -> Answer {
    answer(by, json!({"approved": true}))
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

async fn assert_chain_ok(engine: &Engine, id: Uuid, rows: usize) {
    let check = engine.verify_audit(id).await.unwrap();
    assert!(check.ok, "audit chain of {id} broken: {check:?}");
    assert_eq!(check.rows, rows, "audit rows of {id}");
}

/// Waits (bounded) until the wall clock is past `ms`.
async fn until_past(ms: i64) {
    let start = Instant::now();
    while now_ms() <= ms {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "clock did not pass {ms}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ids(items: &[Task]) -> Vec<Uuid> {
    items.iter().map(|t| t.id).collect()
}

// ---------------------------------------------------------------------------------------------
// creation and idempotency

async fn create_is_idempotent_by_key(db: Db) {
    let engine = db.open().await;
    let first = engine.create(task("refund-A-1")).await.unwrap();
    assert!(first.created);
    let t = &first.task;
    assert_eq!(t.status, Status::Pending);
    assert_eq!(t.namespace, "default");
    assert_eq!(t.key, "refund-A-1");
    assert_eq!(t.digest.len(), 64);
    assert_eq!(
        engine.get(t.id).await.unwrap(),
        *t,
        "the stored task is the returned one"
    );

    // Same key, same request: the same task, not created.
    let again = engine.create(task("refund-A-1")).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.task, *t);

    // Same key, anything in the digest different: refused, naming the existing task.
    let variants = [
        NewTask {
            payload: json!({"order_id": "A-1", "amount": 501.0}),
            ..task("refund-A-1")
        },
        NewTask {
            title: "Approve this other refund?".into(),
            ..task("refund-A-1")
        },
        NewTask {
            response_schema: json!({"type": "object"}),
            ..task("refund-A-1")
        },
        NewTask {
            payload_schema: Some(json!({"type": "object"})),
            ..task("refund-A-1")
        },
    ];
    for v in variants {
        match engine.create(v).await {
            Err(e @ Error::KeyReused { .. }) => {
                assert_eq!(e.code(), "key_reused");
                let Error::KeyReused {
                    existing,
                    ref key,
                    ref namespace,
                    ref existing_digest,
                    ..
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(existing, t.id);
                assert_eq!(key, "refund-A-1");
                assert_eq!(namespace, "default");
                assert_eq!(*existing_digest, t.digest);
                assert_eq!(e.details()["existing_task"], json!(t.id));
            }
            other => panic!("expected KeyReused, got {other:?}"),
        }
    }

    // The key is unique per namespace, not globally.
    let other_ns = engine.create(in_ns("team-b", "refund-A-1")).await.unwrap();
    assert!(other_ns.created);
    assert_ne!(other_ns.task.id, t.id);

    // A replay after the task ended returns the ended task and its answer.
    engine.answer(t.id, approve("alice")).await.unwrap();
    let replay = engine.create(task("refund-A-1")).await.unwrap();
    assert!(!replay.created);
    assert_eq!(replay.task.id, t.id);
    assert_eq!(replay.task.status, Status::Completed);
    assert_eq!(replay.task.response, Some(json!({"approved": true})));
    assert_eq!(replay.task.answered_by.as_deref(), Some("alice"));

    // Without a key every call creates a task.
    let a = engine
        .create(NewTask {
            key: None,
            ..task("x")
        })
        .await
        .unwrap();
    let b = engine
        .create(NewTask {
            key: None,
            ..task("x")
        })
        .await
        .unwrap();
    assert!(a.created && b.created);
    assert_ne!(a.task.id, b.task.id);

    // Replays write no audit rows.
    assert_eq!(kinds(&engine, t.id).await, ["created", "answer_accepted"]);
}

async fn concurrent_creators_get_one_task(db: Db) {
    let mut engines = Vec::new();
    for _ in 0..5 {
        engines.push(db.open().await);
    }
    let mut handles = Vec::new();
    for i in 0..50 {
        let engine = engines[i % engines.len()].clone();
        handles.push(tokio::spawn(async move {
            engine.create(in_ns("race", "one-key")).await
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap().expect("every concurrent create succeeds"));
    }
    let distinct: HashSet<Uuid> = results.iter().map(|c| c.task.id).collect();
    assert_eq!(
        distinct.len(),
        1,
        "one task id among all results: {distinct:?}"
    );
    assert_eq!(
        results.iter().filter(|c| c.created).count(),
        1,
        "exactly one created: true"
    );
    let id = results[0].task.id;

    let page = engines[0]
        .list(ListFilter {
            namespace: Some("race".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&page.items), [id]);
    assert_eq!(kinds(&engines[0], id).await, ["created"]);
    assert_chain_ok(&engines[0], id, 1).await;
}

// ---------------------------------------------------------------------------------------------
// answers

async fn concurrent_answers_accept_exactly_one(db: Db) {
    let mut engines = Vec::new();
    for _ in 0..5 {
        engines.push(db.open().await);
    }
    let id = engines[0].create(task("contended")).await.unwrap().task.id;
    let mut handles = Vec::new();
    for i in 0..50 {
        let engine = engines[i % engines.len()].clone();
        handles.push(tokio::spawn(async move {
            let by = format!("reviewer-{i}");
            let note = by.clone();
            (
                by,
                engine
                    .answer(
                        id,
                        answer(&note, json!({"approved": i % 2 == 0, "note": note})),
                    )
                    .await,
            )
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let winners: Vec<&(String, Result<Task, Error>)> =
        results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one answer accepted");
    let (winner_by, winner) = winners[0];
    let winner = winner.as_ref().unwrap();
    assert_eq!(winner.status, Status::Completed);
    assert_eq!(winner.answered_by.as_deref(), Some(winner_by.as_str()));
    let ended_at = winner.ended_at.expect("a completed task has ended_at");

    for (by, r) in &results {
        if by == winner_by {
            continue;
        }
        match r {
            Err(
                e @ Error::Conflict {
                    id: cid,
                    status,
                    by: cby,
                    at,
                },
            ) => {
                assert_eq!(e.code(), "conflict");
                assert_eq!(*cid, id);
                assert_eq!(*status, Status::Completed);
                assert_eq!(
                    cby.as_deref(),
                    Some(winner_by.as_str()),
                    "conflict names the winner"
                );
                assert_eq!(
                    *at, ended_at,
                    "conflict names the time of the accepted answer"
                );
                let msg = e.to_string();
                assert!(msg.contains(winner_by.as_str()), "{msg}");
                assert!(msg.contains(&format_ms(ended_at)), "{msg}");
                assert_eq!(e.details()["by"], json!(winner_by));
            }
            other => panic!("{by}: expected Conflict, got {other:?}"),
        }
    }

    let stored = engines[1].get(id).await.unwrap();
    assert_eq!(stored.status, Status::Completed);
    assert_eq!(stored.answered_by.as_deref(), Some(winner_by.as_str()));
    assert_eq!(stored.response, winner.response);
    assert_eq!(stored.response.as_ref().unwrap()["note"], json!(winner_by));
    assert_eq!(stored.answered_via.as_deref(), Some("api"));

    let audit = engines[2].audit(id).await.unwrap();
    assert_eq!(audit.len(), 51);
    assert_eq!(
        audit.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<i64>>()
    );
    assert_eq!(audit[0].kind, "created");
    assert_eq!(
        audit.iter().filter(|e| e.kind == "answer_accepted").count(),
        1
    );
    assert_eq!(
        audit.iter().filter(|e| e.kind == "answer_refused").count(),
        49
    );
    let accepted = audit.iter().find(|e| e.kind == "answer_accepted").unwrap();
    assert_eq!(accepted.actor.as_deref(), Some(winner_by.as_str()));
    assert_eq!(
        accepted.seq, 2,
        "the accepted answer is the first after creation"
    );
    let refused_by: HashSet<&str> = audit
        .iter()
        .filter(|e| e.kind == "answer_refused")
        .map(|e| e.actor.as_deref().unwrap())
        .collect();
    assert_eq!(refused_by.len(), 49, "every loser is recorded by name");
    assert!(!refused_by.contains(winner_by.as_str()));
    assert_chain_ok(&engines[3], id, 51).await;
}

async fn invalid_answer_is_refused_and_audited(db: Db) {
    let engine = db.open().await;
    let id = engine.create(task("strict")).await.unwrap().task.id;

    match engine
        .answer(id, answer("mallory", json!({"approved": "yes"})))
        .await
    {
        Err(e @ Error::InvalidAnswer { .. }) => {
            assert_eq!(e.code(), "invalid_answer");
            let Error::InvalidAnswer { errors } = &e else {
                unreachable!()
            };
            assert!(
                errors.iter().any(|f| f.path == "/approved"),
                "a field error points at /approved: {errors:?}"
            );
        }
        other => panic!("expected InvalidAnswer, got {other:?}"),
    }
    // Missing required field: the error is at the document root.
    match engine
        .answer(id, answer("mallory", json!({"note": "hm"})))
        .await
    {
        Err(Error::InvalidAnswer { errors }) => {
            assert!(
                errors
                    .iter()
                    .any(|f| f.path.is_empty() && f.message.contains("approved"))
            );
        }
        other => panic!("expected InvalidAnswer, got {other:?}"),
    }
    // A NUL in a string is refused on both backends (PostgreSQL cannot store it).
    match engine
        .answer(
            id,
            answer("mallory", json!({"approved": true, "note": "a\u{0000}b"})),
        )
        .await
    {
        Err(Error::InvalidAnswer { errors }) => {
            assert!(errors.iter().any(|f| f.path == "/note"), "{errors:?}");
        }
        other => panic!("expected InvalidAnswer, got {other:?}"),
    }
    // An oversize answer.
    let big = "x".repeat(300 * 1024);
    match engine
        .answer(
            id,
            answer("mallory", json!({"approved": true, "note": big})),
        )
        .await
    {
        Err(e @ Error::TooLarge { .. }) => assert_eq!(e.code(), "too_large"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A malformed `by` is an argument error and is not audited.
    assert!(matches!(
        engine.answer(id, approve("  ")).await,
        Err(Error::InvalidArgument(_))
    ));

    let t = engine.get(id).await.unwrap();
    assert_eq!(
        t.status,
        Status::Pending,
        "an invalid answer leaves the task pending"
    );
    assert_eq!(t.response, None);
    let audit = engine.audit(id).await.unwrap();
    assert_eq!(
        audit.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        [
            "created",
            "answer_refused",
            "answer_refused",
            "answer_refused",
            "answer_refused"
        ]
    );
    let first = &audit[1];
    assert_eq!(first.actor.as_deref(), Some("mallory"));
    assert_eq!(first.channel.as_deref(), Some("api"));
    assert_eq!(first.data["reason"], json!("invalid"));
    assert_eq!(first.data["code"], json!("invalid_answer"));
    assert!(
        first.data["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == json!("/approved")),
        "the refusal records the field errors: {}",
        first.data
    );
    assert_eq!(audit[4].data["code"], json!("too_large"));

    // A valid answer is then accepted.
    let done = engine
        .answer(id, answer("alice", json!({"approved": false})))
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.response, Some(json!({"approved": false})));
    assert_eq!(
        engine
            .await_response(id)
            .await
            .unwrap()
            .answered_by
            .as_deref(),
        Some("alice")
    );
    assert_eq!(kinds(&engine, id).await.last().unwrap(), "answer_accepted");
    assert_chain_ok(&engine, id, 6).await;
}

// ---------------------------------------------------------------------------------------------
// validation

async fn creation_is_validated(db: Db) {
    let engine = db.open().await;
    let payload_schema = json!({
        "type": "object",
        "properties": {"amount": {"type": "number", "minimum": 0}, "note": {"type": "string"}},
        "required": ["amount"]
    });
    let with_payload = |payload: Value| NewTask {
        payload,
        payload_schema: Some(payload_schema.clone()),
        ..task("validated")
    };

    match engine.create(with_payload(json!({"amount": -5}))).await {
        Err(e @ Error::InvalidPayload { .. }) => {
            assert_eq!(e.code(), "invalid_payload");
            let Error::InvalidPayload { errors } = &e else {
                unreachable!()
            };
            assert!(errors.iter().any(|f| f.path == "/amount"), "{errors:?}");
            assert_eq!(e.details()["errors"][0]["path"], json!("/amount"));
        }
        other => panic!("expected InvalidPayload, got {other:?}"),
    }
    match engine.create(with_payload(json!({"note": 3}))).await {
        Err(Error::InvalidPayload { errors }) => {
            assert!(errors.iter().any(|f| f.path == "/note"), "{errors:?}");
            assert!(
                errors.iter().any(|f| f.path.is_empty()),
                "missing amount: {errors:?}"
            );
        }
        other => panic!("expected InvalidPayload, got {other:?}"),
    }
    // NUL in a payload string, with or without a payload schema.
    match engine
        .create(NewTask {
            payload: json!({"note": "a\u{0000}b"}),
            ..task("nul")
        })
        .await
    {
        Err(Error::InvalidPayload { errors }) => {
            assert!(errors.iter().any(|f| f.path == "/note"), "{errors:?}");
        }
        other => panic!("expected InvalidPayload, got {other:?}"),
    }
    match engine
        .create(NewTask {
            payload: json!({"a\u{0000}": 1}),
            ..task("nul-key")
        })
        .await
    {
        Err(Error::InvalidPayload { .. }) => {}
        other => panic!("expected InvalidPayload, got {other:?}"),
    }
    // Unusable schemas.
    for (new, which) in [
        (
            NewTask {
                response_schema: json!({"type": "nope"}),
                ..task("s1")
            },
            "response_schema",
        ),
        (
            NewTask {
                response_schema: json!(5),
                ..task("s2")
            },
            "response_schema",
        ),
        (
            NewTask {
                payload_schema: Some(json!({"type": "nope"})),
                ..task("s3")
            },
            "payload_schema",
        ),
    ] {
        match engine.create(new).await {
            Err(e @ Error::InvalidSchema { .. }) => {
                assert_eq!(e.code(), "invalid_schema");
                assert_eq!(e.details()["schema"], json!(which));
            }
            other => panic!("expected InvalidSchema ({which}), got {other:?}"),
        }
    }
    // Size limit: 256 KiB of canonical JSON.
    let big = "x".repeat(256 * 1024 + 1);
    match engine
        .create(NewTask {
            payload: json!({"blob": big}),
            ..task("big")
        })
        .await
    {
        Err(e @ Error::TooLarge { .. }) => {
            assert_eq!(e.code(), "too_large");
            let Error::TooLarge { what, limit, size } = e else {
                unreachable!()
            };
            assert_eq!(what, "payload");
            assert_eq!(limit, 256 * 1024);
            assert!(size > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Arguments.
    let bad_args = [
        (
            "bad namespace",
            NewTask {
                namespace: Some("bad ns!".into()),
                ..task("a1")
            },
        ),
        (
            "empty namespace",
            NewTask {
                namespace: Some(String::new()),
                ..task("a2")
            },
        ),
        (
            "empty title",
            NewTask {
                title: String::new(),
                ..task("a3")
            },
        ),
        (
            "blank title",
            NewTask {
                title: "   ".into(),
                ..task("a4")
            },
        ),
        (
            "empty key",
            NewTask {
                key: Some(String::new()),
                ..task("a5")
            },
        ),
        (
            "key with a control char",
            NewTask {
                key: Some("k\u{7}".into()),
                ..task("a6")
            },
        ),
        (
            "notify without kind",
            NewTask {
                notify: vec!["ops".into()],
                ..task("a7")
            },
        ),
        (
            "notify with empty kind",
            NewTask {
                notify: vec![":ops".into()],
                ..task("a8")
            },
        ),
        (
            "zero timeout",
            NewTask {
                timeout_ms: Some(0),
                ..task("a9")
            },
        ),
    ];
    for (what, new) in bad_args {
        match engine.create(new).await {
            Err(e @ Error::InvalidArgument(_)) => assert_eq!(e.code(), "invalid_argument"),
            other => panic!("{what}: expected InvalidArgument, got {other:?}"),
        }
    }

    // Nothing was written by any refused creation.
    let all = engine.list(ListFilter::default()).await.unwrap();
    assert!(
        all.items.is_empty(),
        "refused creations wrote tasks: {:?}",
        ids(&all.items)
    );
    let audit_rows = db.raw_count("SELECT COUNT(*) FROM inloop_audit").await;
    assert_eq!(audit_rows, 0);

    // The positive controls pass.
    let ok = engine
        .create(NewTask {
            notify: vec!["slack:#ops".into(), "email:a@x.com".into()],
            assign_to: vec!["alice".into()],
            namespace: Some("team-a.prod:eu_1".into()),
            ..with_payload(json!({"amount": 5, "note": "fine"}))
        })
        .await
        .unwrap();
    assert!(ok.created);
    assert_eq!(ok.task.notify, ["slack:#ops", "email:a@x.com"]);
    assert_eq!(ok.task.assign_to, ["alice"]);
    assert_eq!(ok.task.payload_schema, Some(payload_schema));
    assert_eq!(engine.get(ok.task.id).await.unwrap(), ok.task);
}

async fn unknown_ids_are_not_found(db: Db) {
    let engine = db.open().await;
    engine.create(task("exists")).await.unwrap();
    let missing = Uuid::now_v7();
    let is_not_found = |what: &str, r: Result<(), Error>| match r {
        Err(e @ Error::NotFound(_)) => {
            assert_eq!(e.code(), "not_found");
            assert_eq!(e.details()["id"], json!(missing.to_string()));
        }
        other => panic!("{what}: expected NotFound, got {other:?}"),
    };
    is_not_found("get", engine.get(missing).await.map(drop));
    is_not_found(
        "answer",
        engine.answer(missing, approve("alice")).await.map(drop),
    );
    is_not_found(
        "invalid answer",
        engine
            .answer(missing, answer("alice", json!(1)))
            .await
            .map(drop),
    );
    is_not_found(
        "cancel",
        engine.cancel(missing, "bob", "api", None).await.map(drop),
    );
    is_not_found("audit", engine.audit(missing).await.map(drop));
    is_not_found("verify_audit", engine.verify_audit(missing).await.map(drop));
    is_not_found("expire", engine.expire(missing).await.map(drop));
    let waited = tokio::time::timeout(Duration::from_secs(5), engine.await_response(missing))
        .await
        .expect("waiting on an unknown id returns at once");
    is_not_found("await_response", waited.map(drop));
    assert_eq!(engine.watched(), 0);
    // Nothing was written for the unknown id.
    assert_eq!(db.raw_count("SELECT COUNT(*) FROM inloop_audit").await, 1);
}

// ---------------------------------------------------------------------------------------------
// waiting

/// Spawns `await_response(id)` on `engine` and returns once it is subscribed (once the
/// engine has waiters on `parked` distinct task ids).
async fn spawn_waiter(
    engine: &Engine,
    id: Uuid,
    parked: usize,
) -> tokio::task::JoinHandle<Result<Task, Error>> {
    let e = engine.clone();
    let h = tokio::spawn(async move { e.await_response(id).await });
    let e = engine.clone();
    eventually("the waiter to park", Duration::from_secs(5), move || {
        e.watched() == parked
    })
    .await;
    // Give the waiter's first read time to finish, so the wake path (not the first read) is
    // what sees the answer. Correctness does not depend on this; only what the test covers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !h.is_finished(),
        "the waiter returned before anything happened"
    );
    h
}

async fn join_waiter(h: tokio::task::JoinHandle<Result<Task, Error>>) -> Result<Task, Error> {
    tokio::time::timeout(Duration::from_secs(2), h)
        .await
        .expect("the waiter woke within 2 s")
        .expect("the waiter did not panic")
}

async fn waiter_wakes_on_answer_from_another_engine(db: Db) {
    let waiting = db.open().await;
    let answering = db.open().await;
    let id = waiting.create(task("cross")).await.unwrap().task.id;
    let h = spawn_waiter(&waiting, id, 1).await;
    assert_eq!(waiting.watched(), 1);

    let t0 = Instant::now();
    answering.answer(id, approve("alice")).await.unwrap();
    let done = join_waiter(h).await.unwrap();
    let latency = t0.elapsed();
    assert!(latency < Duration::from_secs(2), "woke after {latency:?}");
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.answered_by.as_deref(), Some("alice"));
    assert_eq!(done.response, Some(json!({"approved": true})));
    eventually("the waiter to unpark", Duration::from_secs(2), || {
        waiting.watched() == 0
    })
    .await;

    // A second round on the same engines: the watcher keeps working after the first wake.
    let id2 = waiting.create(task("cross-2")).await.unwrap().task.id;
    let h = spawn_waiter(&waiting, id2, 1).await;
    answering
        .answer(id2, answer("bob", json!({"approved": false})))
        .await
        .unwrap();
    let done = join_waiter(h).await.unwrap();
    assert_eq!(done.answered_by.as_deref(), Some("bob"));
    assert_eq!(done.response, Some(json!({"approved": false})));
}

async fn waiter_wakes_on_answer_from_same_engine(db: Db) {
    let engine = db.open().await;
    let id = engine.create(task("same")).await.unwrap().task.id;
    let other = engine.create(task("same-other")).await.unwrap().task.id;
    // Several waiters on one task, one on another; a clone of the engine answers.
    let mut waiters = Vec::new();
    for _ in 0..5 {
        waiters.push(spawn_waiter(&engine, id, 1).await);
    }
    let other_waiter = spawn_waiter(&engine, other, 2).await;
    assert_eq!(engine.watched(), 2, "watched counts distinct task ids");

    let t0 = Instant::now();
    engine.clone().answer(id, approve("alice")).await.unwrap();
    for h in waiters {
        let done = join_waiter(h).await.unwrap();
        assert_eq!(done.id, id);
        assert_eq!(done.answered_by.as_deref(), Some("alice"));
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        !other_waiter.is_finished(),
        "a waiter of another task stayed parked"
    );
    assert_eq!(engine.watched(), 1);

    engine.answer(other, approve("bob")).await.unwrap();
    assert_eq!(
        join_waiter(other_waiter)
            .await
            .unwrap()
            .answered_by
            .as_deref(),
        Some("bob")
    );
    assert_eq!(engine.watched(), 0);

    // Waiting on a task that already ended returns at once.
    let again = tokio::time::timeout(Duration::from_secs(2), engine.await_response(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.answered_by.as_deref(), Some("alice"));
}

async fn wait_with_limit_returns_pending_task(db: Db) {
    let engine = db.open().await;
    let id = engine.create(task("limited")).await.unwrap().task.id;
    let t0 = Instant::now();
    let t = engine
        .wait(id, Some(Duration::from_millis(200)))
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(t.status, Status::Pending);
    assert_eq!(t.id, id);
    assert!(
        took >= Duration::from_millis(190),
        "returned early, after {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "returned late, after {took:?}"
    );
    assert_eq!(engine.watched(), 0);

    // A limit does not hide an answer that comes in time.
    let other = db.open().await;
    let e = engine.clone();
    let h = tokio::spawn(async move { e.wait(id, Some(Duration::from_secs(30))).await });
    eventually("the waiter to park", Duration::from_secs(5), || {
        engine.watched() == 1
    })
    .await;
    other.answer(id, approve("alice")).await.unwrap();
    let done = join_waiter(h).await.unwrap();
    assert_eq!(done.status, Status::Completed);

    // wait() on an ended task returns it (Ok) whatever the outcome.
    let c = engine
        .create(task("limited-cancelled"))
        .await
        .unwrap()
        .task
        .id;
    engine.cancel(c, "bob", "api", None).await.unwrap();
    let t = engine.wait(c, Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!(t.status, Status::Cancelled);
}

async fn dropped_wait_changes_nothing(db: Db) {
    let engine = db.open().await;
    let id = engine.create(task("dropped")).await.unwrap().task.id;

    let r = tokio::time::timeout(Duration::from_millis(150), engine.await_response(id)).await;
    assert!(r.is_err(), "the wait was cut short by the timeout");
    assert_eq!(engine.watched(), 0, "a dropped wait unparks at once");

    // An aborted waiter task unparks too.
    let h = spawn_waiter(&engine, id, 1).await;
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    eventually(
        "the aborted waiter to unpark",
        Duration::from_secs(2),
        || engine.watched() == 0,
    )
    .await;

    let t = engine.get(id).await.unwrap();
    assert_eq!(t.status, Status::Pending);
    assert_eq!(
        kinds(&engine, id).await,
        ["created"],
        "dropping a wait writes nothing"
    );

    // Still answerable, and a new wait gets the answer.
    let h = spawn_waiter(&engine, id, 1).await;
    db.open().await.answer(id, approve("alice")).await.unwrap();
    assert_eq!(
        join_waiter(h).await.unwrap().answered_by.as_deref(),
        Some("alice")
    );
    assert_eq!(engine.watched(), 0);
}

// ---------------------------------------------------------------------------------------------
// timeouts and cancellation

async fn timeout_ends_the_wait_and_refuses_late_answers(db: Db) {
    let engine = db.open().await;
    let created = engine
        .create(NewTask {
            timeout_ms: Some(300),
            ..task("deadline")
        })
        .await
        .unwrap()
        .task;
    let id = created.id;
    let deadline = created.deadline.expect("a timeout sets a deadline");
    assert_eq!(deadline, created.created_at + 300);

    let t0 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(3), engine.await_response(id))
        .await
        .expect("the wait ends at the deadline");
    let took = t0.elapsed();
    match r {
        Err(e @ Error::TimedOut { .. }) => {
            assert_eq!(e.code(), "timed_out");
            let Error::TimedOut { id: tid, at } = e else {
                unreachable!()
            };
            assert_eq!(tid, id);
            assert_eq!(at, deadline);
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(200),
        "timed out early, after {took:?}"
    );
    assert!(now_ms() >= deadline);
    assert_eq!(engine.watched(), 0);

    let t = engine.get(id).await.unwrap();
    assert_eq!(t.status, Status::TimedOut);
    assert!(t.ended_at.is_some_and(|e| e >= deadline));
    assert_eq!(t.response, None, "a timeout is never silently an answer");
    assert_eq!(kinds(&engine, id).await, ["created", "timed_out"]);

    // A late answer: Conflict (status timed_out), audited.
    let other = db.open().await;
    match other.answer(id, approve("slowpoke")).await {
        Err(Error::Conflict {
            id: cid,
            status,
            by,
            at,
        }) => {
            assert_eq!(cid, id);
            assert_eq!(status, Status::TimedOut);
            assert_eq!(by, None);
            assert_eq!(at, deadline);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let audit = engine.audit(id).await.unwrap();
    assert_eq!(
        audit.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["created", "timed_out", "answer_refused"]
    );
    assert_eq!(audit[2].actor.as_deref(), Some("slowpoke"));
    assert_chain_ok(&engine, id, 3).await;
    assert_eq!(engine.get(id).await.unwrap().status, Status::TimedOut);
    // Waiting again reports the timeout at once.
    assert!(matches!(
        engine.await_response(id).await,
        Err(Error::TimedOut { .. })
    ));

    // An answer to an overdue task nobody has expired yet times it out, then refuses.
    let fresh = db.open().await; // no waits, so no background sweeper
    let late = fresh
        .create(NewTask {
            timeout_ms: Some(50),
            ..task("deadline-unswept")
        })
        .await
        .unwrap()
        .task;
    until_past(late.deadline.unwrap()).await;
    match fresh.answer(late.id, approve("slowpoke")).await {
        Err(Error::Conflict {
            status: Status::TimedOut,
            ..
        }) => {}
        other => panic!("expected Conflict(timed_out), got {other:?}"),
    }
    assert_eq!(fresh.get(late.id).await.unwrap().status, Status::TimedOut);
    assert_eq!(
        kinds(&fresh, late.id).await,
        ["created", "timed_out", "answer_refused"]
    );
    assert_chain_ok(&fresh, late.id, 3).await;
}

async fn expire_due_times_out_once_across_engines(db: Db) {
    // Engines that never wait run no background sweeper: only expire_due ends tasks here.
    let creator = db.open().await;
    let mut overdue = Vec::new();
    for i in 0..10 {
        let t = creator
            .create(NewTask {
                timeout_ms: Some(100),
                ..task(&format!("due-{i}"))
            })
            .await
            .unwrap()
            .task;
        overdue.push(t);
    }
    let later = creator
        .create(NewTask {
            timeout_ms: Some(3_600_000),
            ..task("not-due")
        })
        .await
        .unwrap()
        .task;
    let never = creator.create(task("no-deadline")).await.unwrap().task;
    until_past(overdue.iter().map(|t| t.deadline.unwrap()).max().unwrap()).await;

    let a = db.open().await;
    let b = db.open().await;
    let c = db.open().await;
    let (ra, rb, rc) = tokio::join!(a.expire_due(), b.expire_due(), c.expire_due());
    let (ra, rb, rc) = (ra.unwrap(), rb.unwrap(), rc.unwrap());
    assert_eq!(
        ra + rb + rc,
        overdue.len(),
        "each overdue task is counted by exactly one sweeper ({ra} + {rb} + {rc})"
    );

    for t in &overdue {
        let now = creator.get(t.id).await.unwrap();
        assert_eq!(now.status, Status::TimedOut, "{}", t.key);
        assert_eq!(
            kinds(&creator, t.id).await,
            ["created", "timed_out"],
            "{}",
            t.key
        );
        assert_chain_ok(&creator, t.id, 2).await;
    }
    let timed_out_rows = db
        .raw_count("SELECT COUNT(*) FROM inloop_audit WHERE kind = 'timed_out'")
        .await;
    assert_eq!(
        timed_out_rows,
        overdue.len() as i64,
        "one timed_out row per task in total"
    );
    assert_eq!(creator.get(later.id).await.unwrap().status, Status::Pending);
    assert_eq!(creator.get(never.id).await.unwrap().status, Status::Pending);
    assert_eq!(a.expire_due().await.unwrap(), 0, "nothing left to expire");

    // expire() on a task that is not overdue changes nothing.
    assert_eq!(a.expire(later.id).await.unwrap().status, Status::Pending);
    assert_eq!(kinds(&a, later.id).await, ["created"]);
}

async fn cancel_ends_the_task(db: Db) {
    let waiting = db.open().await;
    let cancelling = db.open().await;
    let id = waiting.create(task("to-cancel")).await.unwrap().task.id;
    let h = spawn_waiter(&waiting, id, 1).await;

    let t = cancelling
        .cancel(id, "bob", "cli", Some("no longer needed"))
        .await
        .unwrap();
    assert_eq!(t.status, Status::Cancelled);
    assert_eq!(t.cancelled_by.as_deref(), Some("bob"));
    assert_eq!(t.cancel_reason.as_deref(), Some("no longer needed"));
    let ended_at = t.ended_at.expect("a cancelled task has ended_at");

    match join_waiter(h).await {
        Err(e @ Error::Cancelled { .. }) => {
            assert_eq!(e.code(), "cancelled");
            assert!(e.to_string().contains("bob"), "{e}");
            let Error::Cancelled {
                id: cid,
                by,
                reason,
                at,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(cid, id);
            assert_eq!(by.as_deref(), Some("bob"));
            assert_eq!(reason.as_deref(), Some("no longer needed"));
            assert_eq!(at, ended_at);
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(matches!(
        waiting.await_response(id).await,
        Err(Error::Cancelled { .. })
    ));

    match cancelling.cancel(id, "carol", "api", None).await {
        Err(Error::Conflict { status, by, .. }) => {
            assert_eq!(status, Status::Cancelled);
            assert_eq!(by.as_deref(), Some("bob"));
        }
        other => panic!("cancel again: expected Conflict, got {other:?}"),
    }
    match waiting.answer(id, approve("alice")).await {
        Err(e @ Error::Conflict { .. }) => {
            assert!(e.to_string().contains("cancelled by bob"), "{e}");
            let Error::Conflict { status, by, at, .. } = e else {
                unreachable!()
            };
            assert_eq!(status, Status::Cancelled);
            assert_eq!(by.as_deref(), Some("bob"));
            assert_eq!(at, ended_at);
        }
        other => panic!("answer after cancel: expected Conflict, got {other:?}"),
    }
    let t = waiting.get(id).await.unwrap();
    assert_eq!(t.status, Status::Cancelled);
    assert_eq!(t.response, None);
    let audit = waiting.audit(id).await.unwrap();
    assert_eq!(
        audit.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["created", "cancelled", "answer_refused"]
    );
    assert_eq!(audit[1].actor.as_deref(), Some("bob"));
    assert_eq!(audit[1].channel.as_deref(), Some("cli"));
    assert_eq!(audit[1].data["reason"], json!("no longer needed"));
    assert_chain_ok(&waiting, id, 3).await;

    // A completed task cannot be cancelled.
    let done = waiting
        .create(task("answered-first"))
        .await
        .unwrap()
        .task
        .id;
    waiting.answer(done, approve("alice")).await.unwrap();
    match cancelling.cancel(done, "bob", "api", None).await {
        Err(Error::Conflict {
            status: Status::Completed,
            by,
            ..
        }) => {
            assert_eq!(by.as_deref(), Some("alice"))
        }
        other => panic!("expected Conflict(completed), got {other:?}"),
    }
    assert_eq!(waiting.get(done).await.unwrap().status, Status::Completed);
}

// ---------------------------------------------------------------------------------------------
// listing

async fn list_filters(db: Db) {
    let engine = db.open().await;
    let mut first_batch = Vec::new();
    for key in ["alpha-1", "alpha-2", "beta-1", "a%b-1", "a_c"] {
        first_batch.push(engine.create(in_ns("list-a", key)).await.unwrap().task);
    }
    first_batch.push(
        engine
            .create(in_ns("list-b", "alpha-1"))
            .await
            .unwrap()
            .task,
    );
    let by_key = |k: &str| {
        first_batch
            .iter()
            .find(|t| t.key == k && t.namespace == "list-a")
            .unwrap()
            .id
    };
    engine
        .answer(by_key("alpha-2"), approve("alice"))
        .await
        .unwrap();
    engine
        .cancel(by_key("beta-1"), "bob", "api", None)
        .await
        .unwrap();

    let list = |f: ListFilter| {
        let engine = engine.clone();
        async move { engine.list(f).await.unwrap() }
    };
    let ns = |n: &str| ListFilter {
        namespace: Some(n.into()),
        ..Default::default()
    };

    // Newest first, namespace filter.
    let a = list(ns("list-a")).await;
    let mut expected: Vec<Uuid> = first_batch[..5].iter().map(|t| t.id).collect();
    expected.reverse();
    assert_eq!(ids(&a.items), expected);
    assert_eq!(a.next_cursor, None);
    assert_eq!(list(ns("list-b")).await.items.len(), 1);
    assert_eq!(list(ns("nobody")).await.items.len(), 0);
    assert_eq!(list(ListFilter::default()).await.items.len(), 6);

    // Status.
    let completed = list(ListFilter {
        status: Some(Status::Completed),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&completed.items), [by_key("alpha-2")]);
    let cancelled = list(ListFilter {
        status: Some(Status::Cancelled),
        ..ns("list-a")
    })
    .await;
    assert_eq!(ids(&cancelled.items), [by_key("beta-1")]);
    let pending = list(ListFilter {
        status: Some(Status::Pending),
        ..ns("list-a")
    })
    .await;
    assert_eq!(pending.items.len(), 3);
    assert!(pending.items.iter().all(|t| t.status == Status::Pending));
    let pending_all = list(ListFilter {
        status: Some(Status::Pending),
        ..Default::default()
    })
    .await;
    assert_eq!(pending_all.items.len(), 4);
    let timed_out = list(ListFilter {
        status: Some(Status::TimedOut),
        ..Default::default()
    })
    .await;
    assert!(timed_out.items.is_empty());

    // Key prefix (literal: % and _ are not wildcards).
    let prefix = |p: &str, f: ListFilter| ListFilter {
        key_prefix: Some(p.into()),
        ..f
    };
    let alpha = list(prefix("alpha", ns("list-a"))).await;
    assert_eq!(alpha.items.len(), 2);
    assert!(alpha.items.iter().all(|t| t.key.starts_with("alpha")));
    assert_eq!(
        list(prefix("alpha", ListFilter::default()))
            .await
            .items
            .len(),
        3
    );
    assert_eq!(
        list(prefix("alpha-2", ListFilter::default()))
            .await
            .items
            .len(),
        1
    );
    assert_eq!(
        ids(&list(prefix("a%", ListFilter::default())).await.items),
        [by_key("a%b-1")]
    );
    assert_eq!(
        ids(&list(prefix("a_", ListFilter::default())).await.items),
        [by_key("a_c")]
    );
    assert!(
        list(prefix("zzz", ListFilter::default()))
            .await
            .items
            .is_empty()
    );
    // An empty prefix is no filter.
    assert_eq!(list(prefix("", ListFilter::default())).await.items.len(), 6);
    // Combined.
    let combined = list(ListFilter {
        status: Some(Status::Pending),
        ..prefix("alpha", ns("list-a"))
    })
    .await;
    assert_eq!(ids(&combined.items), [by_key("alpha-1")]);

    // Created after / before: a second batch strictly later than the first.
    until_past(first_batch.iter().map(|t| t.created_at).max().unwrap()).await;
    let mut second_batch = Vec::new();
    for key in ["gamma-1", "gamma-2"] {
        second_batch.push(engine.create(in_ns("list-a", key)).await.unwrap().task);
    }
    let boundary = second_batch[0].created_at;
    let after = list(ListFilter {
        created_after: Some(boundary),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&after.items), [second_batch[1].id, second_batch[0].id]);
    let before = list(ListFilter {
        created_before: Some(boundary),
        ..Default::default()
    })
    .await;
    assert_eq!(before.items.len(), first_batch.len());
    assert!(before.items.iter().all(|t| t.created_at < boundary));
    let window = list(ListFilter {
        created_after: Some(first_batch[0].created_at),
        created_before: Some(boundary),
        ..ns("list-a")
    })
    .await;
    assert_eq!(window.items.len(), 5);
    let empty = list(ListFilter {
        created_after: Some(boundary),
        created_before: Some(boundary),
        ..Default::default()
    })
    .await;
    assert!(empty.items.is_empty());
}

async fn list_pagination_walks_everything_once(db: Db) {
    let engine = db.open().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            engine
                .create(in_ns("page", &format!("p-{i}")))
                .await
                .unwrap()
                .task
                .id,
        );
    }
    // Noise in another namespace must not leak into the pages.
    for i in 0..3 {
        engine
            .create(in_ns("noise", &format!("n-{i}")))
            .await
            .unwrap();
    }
    let mut newest_first = created.clone();
    newest_first.reverse();

    for limit in [1u32, 2, 3, 6, 7, 8, 1000] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = engine
                .list(ListFilter {
                    namespace: Some("page".into()),
                    limit: Some(limit),
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            pages += 1;
            assert!(page.items.len() <= limit as usize);
            assert!(pages <= 8, "pagination did not end (limit {limit})");
            seen.extend(ids(&page.items));
            match page.next_cursor {
                Some(c) => {
                    assert_eq!(
                        page.items.len(),
                        limit as usize,
                        "only full pages have a next cursor"
                    );
                    assert_eq!(c, page.items.last().unwrap().id.to_string());
                    cursor = Some(c);
                }
                None => break,
            }
        }
        assert_eq!(
            seen, newest_first,
            "limit {limit}: every task once, newest first"
        );
        assert_eq!(
            pages,
            7usize.div_ceil(limit as usize).max(1),
            "limit {limit}: page count"
        );
    }

    // The default page size is 50; an empty cursor means the first page.
    let all = engine
        .list(ListFilter {
            cursor: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 10);
    assert_eq!(all.next_cursor, None);
}

async fn list_rejects_bad_arguments(db: Db) {
    let engine = db.open().await;
    engine.create(task("one")).await.unwrap();
    let bad = [
        (
            "limit 0",
            ListFilter {
                limit: Some(0),
                ..Default::default()
            },
        ),
        (
            "limit 1001",
            ListFilter {
                limit: Some(1001),
                ..Default::default()
            },
        ),
        (
            "bad cursor",
            ListFilter {
                cursor: Some("not-a-cursor".into()),
                ..Default::default()
            },
        ),
        (
            "bad namespace",
            ListFilter {
                namespace: Some("bad ns!".into()),
                ..Default::default()
            },
        ),
    ];
    for (what, f) in bad {
        match engine.list(f).await {
            Err(e @ Error::InvalidArgument(_)) => assert_eq!(e.code(), "invalid_argument"),
            other => panic!("{what}: expected InvalidArgument, got {other:?}"),
        }
    }
    for limit in [1, 1000] {
        let page = engine
            .list(ListFilter {
                limit: Some(limit),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// audit

async fn audit_chain_is_ordered_verified_and_append_only(db: Db) {
    let engine = db.open().await;
    let id = engine.create(task("audited")).await.unwrap().task.id;
    let _ = engine
        .answer(id, answer("mallory", json!({"approved": 1})))
        .await
        .unwrap_err();
    engine.answer(id, approve("alice")).await.unwrap();
    let _ = engine.answer(id, approve("bob")).await.unwrap_err();

    let audit = engine.audit(id).await.unwrap();
    assert_eq!(
        audit.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        [
            "created",
            "answer_refused",
            "answer_accepted",
            "answer_refused"
        ]
    );
    assert_eq!(
        audit.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(audit[0].prev_hash, GENESIS);
    for w in audit.windows(2) {
        assert_eq!(
            w[1].prev_hash, w[0].hash,
            "row {} links to row {}",
            w[1].seq, w[0].seq
        );
        assert!(w[1].at >= w[0].at);
    }
    assert!(audit.iter().all(|e| e.task_id == id && e.hash.len() == 64));
    assert_eq!(audit[2].actor.as_deref(), Some("alice"));
    assert_eq!(audit[2].data["response"], json!({"approved": true}));
    assert_eq!(
        audit[0].data["digest"],
        json!(engine.get(id).await.unwrap().digest)
    );
    let check = engine.verify_audit(id).await.unwrap();
    assert!(check.ok, "{check:?}");
    assert_eq!(check.rows, 4);
    assert_eq!(check.broken_at_seq, None);

    // Chains are per task: another task starts at seq 1 from the genesis hash.
    let other = engine.create(task("audited-2")).await.unwrap().task.id;
    let other_audit = engine.audit(other).await.unwrap();
    assert_eq!(other_audit.len(), 1);
    assert_eq!(other_audit[0].seq, 1);
    assert_eq!(other_audit[0].prev_hash, GENESIS);

    // The database itself refuses to edit or remove audit rows.
    for sql in [
        "UPDATE inloop_audit SET actor = 'mallory'",
        "UPDATE inloop_audit SET data = '{}' WHERE seq = 3",
        "DELETE FROM inloop_audit",
        "DELETE FROM inloop_audit WHERE seq = 4",
    ] {
        let r = db.raw_execute(sql).await;
        assert!(r.is_err(), "{sql} was allowed: {r:?}");
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("append-only"), "{sql}: {msg}");
    }
    assert_eq!(
        engine.audit(id).await.unwrap(),
        audit,
        "the rows are unchanged"
    );

    // With the guard removed by someone who owns the database, an edit still shows.
    let drop_guard: &[&str] = match db.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER inloop_audit_append_only_update",
            "DROP TRIGGER inloop_audit_append_only_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER inloop_audit_append_only ON inloop_audit"],
    };
    for sql in drop_guard {
        db.raw_execute(sql).await.unwrap();
    }
    let edited = format!(
        "UPDATE inloop_audit SET data = '{{\"response\":{{\"approved\":false}}}}' WHERE task_id = '{id}' AND seq = 3"
    );
    assert_eq!(db.raw_execute(&edited).await.unwrap(), 1);
    let check = engine.verify_audit(id).await.unwrap();
    assert!(!check.ok);
    assert_eq!(check.broken_at_seq, Some(3));
    assert!(
        engine.verify_audit(other).await.unwrap().ok,
        "other chains are unaffected"
    );
    // A removed row shows too.
    engine.answer(other, approve("alice")).await.unwrap();
    let removed = format!("DELETE FROM inloop_audit WHERE task_id = '{other}' AND seq = 1");
    assert_eq!(db.raw_execute(&removed).await.unwrap(), 1);
    let check = engine.verify_audit(other).await.unwrap();
    assert!(!check.ok);
    assert_eq!(check.broken_at_seq, Some(2));
}

// ---------------------------------------------------------------------------------------------
// durability and migrations

async fn reopen_keeps_everything(db: Db) {
    let engine = db.open().await;
    let answered = engine
        .create(task("durable-answered"))
        .await
        .unwrap()
        .task
        .id;
    engine
        .answer(
            answered,
            answer("alice", json!({"approved": true, "note": "ok"})),
        )
        .await
        .unwrap();
    let pending = engine
        .create(NewTask {
            timeout_ms: Some(3_600_000),
            notify: vec!["slack:#ops".into()],
            ..task("durable-pending")
        })
        .await
        .unwrap()
        .task
        .id;
    let cancelled = engine
        .create(task("durable-cancelled"))
        .await
        .unwrap()
        .task
        .id;
    engine
        .cancel(cancelled, "bob", "api", Some("dup"))
        .await
        .unwrap();

    let ids_ = [answered, pending, cancelled];
    let mut before = Vec::new();
    for id in ids_ {
        before.push((
            engine.get(id).await.unwrap(),
            engine.audit(id).await.unwrap(),
        ));
    }
    let listing = engine.list(ListFilter::default()).await.unwrap();
    engine.close().await;
    drop(engine);

    let engine = db.open().await;
    for (id, (task_before, audit_before)) in ids_.iter().zip(&before) {
        assert_eq!(engine.get(*id).await.unwrap(), *task_before);
        assert_eq!(engine.audit(*id).await.unwrap(), *audit_before);
        assert!(engine.verify_audit(*id).await.unwrap().ok);
    }
    assert_eq!(
        ids(&engine.list(ListFilter::default()).await.unwrap().items),
        ids(&listing.items)
    );

    // The same key still names the same task after a restart; the pending one is answerable.
    let replay = engine
        .create(NewTask {
            timeout_ms: Some(3_600_000),
            notify: vec!["slack:#ops".into()],
            ..task("durable-pending")
        })
        .await
        .unwrap();
    assert!(!replay.created);
    assert_eq!(replay.task.id, pending);
    let replay = engine.create(task("durable-answered")).await.unwrap();
    assert!(!replay.created);
    assert_eq!(
        replay.task.response,
        Some(json!({"approved": true, "note": "ok"}))
    );
    engine.answer(pending, approve("carol")).await.unwrap();
    assert_eq!(
        engine
            .await_response(pending)
            .await
            .unwrap()
            .answered_by
            .as_deref(),
        Some("carol")
    );
    engine.close().await;
}

async fn concurrent_opens_migrate_once(db: Db) {
    let (a, b, c) = tokio::join!(
        Engine::open(&db.url, Default::default()),
        Engine::open(&db.url, Default::default()),
        Engine::open(&db.url, Default::default()),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    // Every migration file of the backend, applied once.
    let dir = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let files = std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count() as i64;
    assert!(
        files >= 4,
        "0001 tasks, 0002 API keys, 0003 users, 0004 verification ..."
    );
    assert_eq!(
        db.raw_count("SELECT COUNT(*) FROM inloop_migrations").await,
        files
    );
    let id = a.create(task("migrated")).await.unwrap().task.id;
    assert_eq!(b.get(id).await.unwrap().id, id);
    assert_eq!(c.list(ListFilter::default()).await.unwrap().items.len(), 1);
    // Migrating again (explicitly, or by opening again) is a no-op.
    a.migrate().await.unwrap();
    let d = db.open().await;
    assert_eq!(
        db.raw_count("SELECT COUNT(*) FROM inloop_migrations").await,
        files
    );
    assert_eq!(d.get(id).await.unwrap().status, Status::Pending);
    assert_eq!(d.backend(), db.backend);
    for e in [a, b, c, d] {
        e.close().await;
    }
}

/// `ask` (create-or-get + wait, what `await_human` calls): wakes on an answer from another
/// engine, replays an answered key at once without a second task, and reports a timeout.
async fn ask_creates_waits_and_replays(db: Db) {
    let agent = db.open().await;
    let human = db.open().await;
    let asking = {
        let agent = agent.clone();
        tokio::spawn(async move { agent.ask(task("ask-1")).await })
    };
    let id = loop {
        let page = human.list(ListFilter::default()).await.unwrap();
        if let Some(t) = page.items.first() {
            break t.id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    human.answer(id, approve("alice")).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(2), asking)
        .await
        .expect("ask resumed within 2 s")
        .unwrap()
        .unwrap();
    assert_eq!((done.id, done.status), (id, Status::Completed));

    // The agent restarts and asks again with the same key: the answer, no second task.
    let again = agent.ask(task("ask-1")).await.unwrap();
    assert_eq!(again.id, id);
    assert_eq!(again.answered_by.as_deref(), Some("alice"));
    let all = human.list(ListFilter::default()).await.unwrap().items;
    assert_eq!(all.len(), 1);

    // Same key, different request: refused before anything waits.
    let mut changed = task("ask-1");
    changed.payload = json!({"order_id": "A-1", "amount": 9.0});
    assert!(matches!(
        agent.ask(changed).await,
        Err(Error::KeyReused { .. })
    ));

    // A deadline ends an ask with TimedOut, and the answer that never came stays absent.
    let mut quick = task("ask-2");
    quick.timeout_ms = Some(200);
    match agent.ask(quick).await {
        Err(Error::TimedOut { .. }) => {}
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert_eq!(agent.watched(), 0);
}

/// The waker survives losing its connection: PostgreSQL's listener connection is killed
/// server-side, an answer commits meanwhile, and the waiter still wakes (the listener
/// reconnects and sweeps what ended while it was away). SQLite has no server-side connection
/// to kill; its variant checks the same wake without the kill.
async fn waker_survives_a_dropped_connection(db: Db) {
    let waiting = db.open().await;
    let answering = db.open().await;
    for round in 0..3 {
        let id = waiting
            .create(task(&format!("drop-{round}")))
            .await
            .unwrap()
            .task
            .id;
        let h = spawn_waiter(&waiting, id, 1).await;
        if db.backend == Backend::Postgres {
            let killed = db
                .raw_count(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                )
                .await;
            assert_eq!(killed, 1, "exactly one listener connection per process");
        }
        answering.answer(id, approve("alice")).await.unwrap();
        let done = join_waiter(h).await.unwrap();
        assert_eq!((done.id, done.status), (id, Status::Completed));
    }
}

/// The agent's trace context is stored with the task (migration 10) and read back as given;
/// a replayed key keeps the first; a malformed one is refused.
async fn traceparent_is_stored_with_the_task(db: Db) {
    let engine = db.open().await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut new = task("traced");
    new.traceparent = Some(tp.into());
    let created = engine.create(new.clone()).await.unwrap();
    assert_eq!(created.task.traceparent.as_deref(), Some(tp));
    let read = engine.get(created.task.id).await.unwrap();
    assert_eq!(read.traceparent.as_deref(), Some(tp));
    new.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let replay = engine.create(new).await.unwrap();
    assert!(!replay.created);
    assert_eq!(replay.task.traceparent.as_deref(), Some(tp));
    // Tracing is off in this test binary: no span, nothing stored.
    assert_eq!(
        engine
            .create(task("untraced"))
            .await
            .unwrap()
            .task
            .traceparent,
        None
    );
    let mut bad = task("bad-trace");
    bad.traceparent = Some("00-nope".into());
    let e = engine.create(bad).await.unwrap_err();
    assert_eq!(e.code(), "invalid_argument", "{e}");
}

conformance!(
    traceparent_is_stored_with_the_task,
    waker_survives_a_dropped_connection,
    ask_creates_waits_and_replays,
    create_is_idempotent_by_key,
    concurrent_creators_get_one_task,
    concurrent_answers_accept_exactly_one,
    invalid_answer_is_refused_and_audited,
    creation_is_validated,
    unknown_ids_are_not_found,
    waiter_wakes_on_answer_from_another_engine,
    waiter_wakes_on_answer_from_same_engine,
    wait_with_limit_returns_pending_task,
    dropped_wait_changes_nothing,
    timeout_ends_the_wait_and_refuses_late_answers,
    expire_due_times_out_once_across_engines,
    cancel_ends_the_task,
    list_filters,
    list_pagination_walks_everything_once,
    list_rejects_bad_arguments,
    audit_chain_is_ordered_verified_and_append_only,
    reopen_keeps_everything,
    concurrent_opens_migrate_once,
);
