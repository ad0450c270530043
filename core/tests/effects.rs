//! Exactly-once effects (`docs/policies.md`), on both backends: one `Run` among concurrent
//! begins (also across two engines, as two processes would be), results recorded and replayed,
//! a started attempt that never finished seen as in doubt, resolutions (mark done, allow
//! retry) as compare-and-sets with an audit trail, tokens, limits, who may do what, and the
//! REST API with the remote client.
//!
//!   cargo test -p inloop-core --test effects                       # SQLite only
//!   INLOOP_TEST_PG_URL=... INLOOP_REQUIRE_PG=1 cargo test -p inloop-core --test effects

mod common;

use std::collections::HashSet;

use common::{Db, serve_engine};
use inloop_core::access::Principal;
use inloop_core::apikeys::create_api_key;
use inloop_core::effects::{
    self, Begin, EffectFilter, EffectState, Resolve, ResolveAction, verify_chain,
};
use inloop_core::users::{self, Role};
use inloop_core::{Engine, Error, RemoteEngine};
use serde_json::{Value, json};

const T: Principal = Principal::Trusted;

fn tok(n: usize) -> String {
    format!("token-{n:04}-0123456789")
}

async fn run_token(engine: &Engine, ns: &str, key: &str, token: &str) -> Begin {
    engine
        .effect_begin(ns, key, Some(token), Some("worker-1"), &T)
        .await
        .unwrap()
}

fn mark_done(result: Value, attempt: Option<u32>) -> Resolve {
    Resolve {
        action: ResolveAction::MarkDone,
        result: Some(result),
        attempt,
        note: Some("checked the provider: the charge exists".into()),
        by: Some("alice".into()),
    }
}

fn allow_retry(attempt: Option<u32>) -> Resolve {
    Resolve {
        action: ResolveAction::AllowRetry,
        result: None,
        attempt,
        note: None,
        by: Some("alice".into()),
    }
}

async fn kinds(engine: &Engine, ns: &str, key: &str) -> Vec<String> {
    let events = engine.effect_audit(ns, key, &T).await.unwrap();
    let check = verify_chain(&events);
    assert!(check.ok, "{check:?}");
    events.into_iter().map(|e| e.kind).collect()
}

/// Many concurrent begins with distinct tokens, from two engines on one database: exactly one
/// runs; every other one is in doubt (never a second run).
async fn concurrent_begins_run_exactly_once(db: Db) {
    let a = db.open().await;
    let b = db.open().await;
    for round in 0..3 {
        let key = format!("charge-{round}");
        let mut calls = Vec::new();
        for i in 0..16 {
            let engine = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            calls.push(tokio::spawn(async move {
                engine
                    .effect_begin("default", &key, Some(&tok(i)), Some("w"), &T)
                    .await
            }));
        }
        let mut runs = 0;
        let mut in_doubt = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(Begin::Run { attempt: 1, .. }) => runs += 1,
                Err(Error::EffectInDoubt { attempt: 1, .. }) => in_doubt += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((runs, in_doubt), (1, 15), "round {round}");
        assert_eq!(kinds(&a, "default", &key).await, ["started"]);
    }
    let n = db
        .raw_count("SELECT COUNT(*) FROM inloop_effect_audit WHERE kind = 'started'")
        .await;
    assert_eq!(n, 3);
    a.close().await;
    b.close().await;
}

/// A finished effect returns its recorded result to every later begin, from any engine, and
/// is never run again; a repeated finish with the same token and result changes nothing.
async fn finish_then_begin_returns_the_result(db: Db) {
    let engine = db.open().await;
    let Begin::Run { token, attempt } = run_token(&engine, "default", "k", &tok(1)).await else {
        panic!("first begin runs")
    };
    assert_eq!(attempt, 1);
    let result = json!({"charge": "ch_1", "amount": 12.5, "z": [1, {"b": 2, "a": 1}]});
    let done = engine
        .effect_finish("default", "k", &token, result.clone(), &T)
        .await
        .unwrap();
    assert_eq!(done.state, EffectState::Done);
    assert_eq!(done.result.as_ref(), Some(&result));
    // replay of the same finish: fine, nothing written
    engine
        .effect_finish("default", "k", &token, result.clone(), &T)
        .await
        .unwrap();
    // a different result from the same token: refused
    let e = engine
        .effect_finish("default", "k", &token, json!(1), &T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict", "{e}");
    let other = db.open().await;
    for i in 2..5 {
        match run_token(&other, "default", "k", &tok(i)).await {
            Begin::Done {
                result: r,
                finished_at,
            } => {
                assert_eq!(r, result);
                // key order as recorded
                assert_eq!(r.to_string(), result.to_string());
                assert_eq!(Some(finished_at), done.finished_at);
            }
            b => panic!("expected done, got {b:?}"),
        }
    }
    assert_eq!(kinds(&engine, "default", "k").await, ["started", "done"]);
    // the same key in another namespace is another effect
    assert!(matches!(
        run_token(&engine, "other-ns", "k", &tok(9)).await,
        Begin::Run { .. }
    ));
    other.close().await;
    engine.close().await;
}

/// A begin after another attempt began and never finished is in doubt (with when, by whom,
/// which attempt); the attempt's own token begins again (a retried request); a token is
/// generated when none is given.
async fn begin_after_an_unfinished_begin_is_in_doubt(db: Db) {
    let engine = db.open().await;
    let Begin::Run { token, .. } = engine
        .effect_begin("default", "pay", None, Some("python:host:42"), &T)
        .await
        .unwrap()
    else {
        panic!("runs")
    };
    assert!(token.len() >= 32, "{token}");
    let e = engine
        .effect_begin("default", "pay", None, Some("python:host:43"), &T)
        .await
        .unwrap_err();
    let Error::EffectInDoubt {
        namespace,
        key,
        attempt,
        started_at,
        started_by,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (namespace.as_str(), key.as_str(), *attempt),
        ("default", "pay", 1)
    );
    assert_eq!(started_by.as_deref(), Some("python:host:42"));
    let stored = engine.effect("default", "pay", &T).await.unwrap();
    assert_eq!(stored.started_at, *started_at);
    assert_eq!(stored.state, EffectState::Running);
    assert!(stored.token.is_some());
    assert_eq!(e.code(), "effect_in_doubt");
    assert!(e.to_string().contains("in doubt"), "{e}");
    assert_eq!(e.details()["started_by"], "python:host:42");
    // the running attempt's own token: run again (nothing else changes)
    assert!(matches!(
        run_token(&engine, "default", "pay", &token).await,
        Begin::Run { attempt: 1, .. }
    ));
    assert_eq!(kinds(&engine, "default", "pay").await, ["started"]);
    // listed in doubt, across namespaces for a trusted caller
    run_token(&engine, "billing", "refund-7", &tok(3)).await;
    let listed: Vec<(String, String)> = engine
        .effects_in_doubt(None, &T)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.namespace, e.key))
        .collect();
    assert_eq!(
        listed,
        [
            ("default".to_string(), "pay".to_string()),
            ("billing".to_string(), "refund-7".to_string())
        ]
    );
    let only = engine.effects_in_doubt(Some("billing"), &T).await.unwrap();
    assert_eq!(only.len(), 1);
    engine.close().await;
}

/// Mark done: later begins get the given result; the attempt that was in doubt can no longer
/// record anything; the resolution is audited (who, when, what) and cannot be repeated.
async fn resolve_mark_done_records_the_result(db: Db) {
    let engine = db.open().await;
    let Begin::Run { token, .. } = run_token(&engine, "default", "ship", &tok(1)).await else {
        panic!()
    };
    // a stale look at the effect (another attempt) is refused
    let e = engine
        .effect_resolve("default", "ship", mark_done(json!("x"), Some(2)), &T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    let after = engine
        .effect_resolve(
            "default",
            "ship",
            mark_done(json!({"tracking": "T-1"}), Some(1)),
            &T,
        )
        .await
        .unwrap();
    assert_eq!(after.state, EffectState::Done);
    assert_eq!(after.resolved_by.as_deref(), Some("alice"));
    assert!(after.resolved_at.is_some());
    match run_token(&engine, "default", "ship", &tok(2)).await {
        Begin::Done { result, .. } => assert_eq!(result, json!({"tracking": "T-1"})),
        b => panic!("{b:?}"),
    }
    // the original attempt wakes up and tries to record: refused, naming who resolved it
    let e = engine
        .effect_finish("default", "ship", &token, json!({"tracking": "T-2"}), &T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("alice"), "{e}");
    let e = engine
        .effect_resolve("default", "ship", allow_retry(None), &T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    let events = engine.effect_audit("default", "ship", &T).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["started", "marked_done"]
    );
    let resolved = &events[1];
    assert_eq!(resolved.actor.as_deref(), Some("alice"));
    assert_eq!(resolved.data["result"], json!({"tracking": "T-1"}));
    assert_eq!(resolved.data["attempt"], 1);
    assert!(resolved.data["note"].as_str().unwrap().contains("provider"));
    // mark done without a result records null
    run_token(&engine, "default", "ship-2", &tok(5)).await;
    let mut r = mark_done(Value::Null, None);
    r.result = None;
    engine
        .effect_resolve("default", "ship-2", r, &T)
        .await
        .unwrap();
    assert!(matches!(
        run_token(&engine, "default", "ship-2", &tok(6)).await,
        Begin::Done {
            result: Value::Null,
            ..
        }
    ));
    engine.close().await;
}

/// Allow retry: the next begin runs (attempt 2); the old attempt cannot finish; a failure
/// (abort) also releases the effect, with its error recorded.
async fn allow_retry_and_failures_run_again(db: Db) {
    let engine = db.open().await;
    let Begin::Run { token: t1, .. } = run_token(&engine, "default", "mail", &tok(1)).await else {
        panic!()
    };
    engine
        .effect_resolve("default", "mail", allow_retry(Some(1)), &T)
        .await
        .unwrap();
    let stored = engine.effect("default", "mail", &T).await.unwrap();
    assert_eq!(stored.state, EffectState::RetryAllowed);
    assert!(stored.token.is_none());
    let Begin::Run { token: t2, attempt } = run_token(&engine, "default", "mail", &tok(2)).await
    else {
        panic!()
    };
    assert_eq!(attempt, 2);
    let e = engine
        .effect_finish("default", "mail", &t1, json!(1), &T)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::EffectConflict { .. }), "{e:?}");
    // attempt 2 fails: released, with the error
    let failed = engine
        .effect_abort(
            "default",
            "mail",
            &t2,
            Some("SMTPError: 451 try later\r\n"),
            &T,
        )
        .await
        .unwrap();
    assert_eq!(failed.state, EffectState::Failed);
    assert_eq!(failed.error.as_deref(), Some("SMTPError: 451 try later"));
    // a repeated abort is fine; a finish after it is not
    engine
        .effect_abort("default", "mail", &t2, Some("again"), &T)
        .await
        .unwrap();
    assert_eq!(
        engine
            .effect_finish("default", "mail", &t2, json!(1), &T)
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    let Begin::Run { token: t3, attempt } = run_token(&engine, "default", "mail", &tok(3)).await
    else {
        panic!()
    };
    assert_eq!(attempt, 3);
    engine
        .effect_finish("default", "mail", &t3, json!({"sent": true}), &T)
        .await
        .unwrap();
    assert_eq!(
        kinds(&engine, "default", "mail").await,
        [
            "started",
            "retry_allowed",
            "started",
            "failed",
            "started",
            "done"
        ]
    );
    // resolving something that is not in doubt is refused
    assert_eq!(
        engine
            .effect_resolve("default", "mail", allow_retry(None), &T)
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );
    assert_eq!(
        engine
            .effect_resolve("default", "nope", allow_retry(None), &T)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    engine.close().await;
}

/// Tokens are compare-and-set: a wrong token never finishes or aborts, and nothing changes.
async fn a_wrong_token_is_refused(db: Db) {
    let engine = db.open().await;
    run_token(&engine, "default", "k", &tok(1)).await;
    for e in [
        engine
            .effect_finish("default", "k", &tok(2), json!(1), &T)
            .await
            .unwrap_err(),
        engine
            .effect_abort("default", "k", &tok(2), None, &T)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), "conflict", "{e}");
        assert_eq!(e.details()["state"], "running");
    }
    assert_eq!(
        engine
            .effect_finish("default", "missing", &tok(1), json!(1), &T)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    let stored = engine.effect("default", "k", &T).await.unwrap();
    assert_eq!(stored.state, EffectState::Running);
    assert_eq!(kinds(&engine, "default", "k").await, ["started"]);
    engine.close().await;
}

/// Results over 256 KiB (canonical JSON) are refused, and the effect stays in doubt (the
/// effect ran: it is never released by a refusal); bad keys, namespaces, tokens and
/// resolutions are clear errors.
async fn limits_and_bad_input(db: Db) {
    let engine = db.open().await;
    let Begin::Run { token, .. } = run_token(&engine, "default", "big", &tok(1)).await else {
        panic!()
    };
    let big = json!({ "blob": "x".repeat(300 * 1024) });
    let e = engine
        .effect_finish("default", "big", &token, big.clone(), &T)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "result", .. }), "{e:?}");
    assert_eq!(
        engine.effect("default", "big", &T).await.unwrap().state,
        EffectState::Running
    );
    let e = engine
        .effect_resolve("default", "big", mark_done(big, None), &T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "too_large");
    // just under the limit is fine
    let fits = json!("y".repeat(200 * 1024));
    engine
        .effect_finish("default", "big", &token, fits.clone(), &T)
        .await
        .unwrap();
    match run_token(&engine, "default", "big", &tok(2)).await {
        Begin::Done { result, .. } => assert_eq!(result, fits),
        b => panic!("{b:?}"),
    }
    let long_key = "k".repeat(513);
    for (ns, key) in [
        ("default", ""),
        ("default", long_key.as_str()),
        ("default", "a\u{0}b"),
        ("default", "line\rbreak"),
        ("bad ns", "k"),
        ("", "k"),
    ] {
        let e = engine
            .effect_begin(ns, key, None, None, &T)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{ns:?} {key:?}: {e}");
    }
    for bad in ["short", "has space in it", "tab\there-1234"] {
        let e = engine
            .effect_begin("default", "k2", Some(bad), None, &T)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{bad:?}");
    }
    let e = engine
        .effect_begin("default", "k2", None, Some(&"b".repeat(400)), &T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    run_token(&engine, "default", "k3", &tok(1)).await;
    let mut no_by = allow_retry(None);
    no_by.by = None;
    assert_eq!(
        engine
            .effect_resolve("default", "k3", no_by, &T)
            .await
            .unwrap_err()
            .code(),
        "invalid_argument"
    );
    let mut retry_with_result = allow_retry(None);
    retry_with_result.result = Some(json!(1));
    assert_eq!(
        engine
            .effect_resolve("default", "k3", retry_with_result, &T)
            .await
            .unwrap_err()
            .code(),
        "invalid_argument"
    );
    for bad in [
        EffectFilter {
            state: Some("sideways".into()),
            ..Default::default()
        },
        EffectFilter {
            limit: Some(0),
            ..Default::default()
        },
    ] {
        assert_eq!(
            engine.effects(bad, &T).await.unwrap_err().code(),
            "invalid_argument"
        );
    }
    // nothing of the refused calls was written
    assert_eq!(kinds(&engine, "default", "k3").await, ["started"]);
    engine.close().await;
}

/// API keys act in their namespace only, and resolve only with `--allow-answer`; reviewers
/// neither see nor resolve effects; admins see and resolve every namespace (as themselves).
async fn who_may_act_on_effects(db: Db) {
    let engine = db.open().await;
    let (agent, _) = create_api_key(&engine, "agent", "billing", false)
        .await
        .unwrap();
    let (ops, _) = create_api_key(&engine, "ops", "billing", true)
        .await
        .unwrap();
    let agent = Principal::ApiKey(agent);
    let ops = Principal::ApiKey(ops);
    let Begin::Run { .. } = engine
        .effect_begin("billing", "refund", Some(&tok(1)), Some("w"), &agent)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        engine
            .effect_begin("default", "refund", None, None, &agent)
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        engine
            .effects(
                EffectFilter {
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                &agent
            )
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    run_token(&engine, "default", "elsewhere", &tok(2)).await;
    let seen = engine
        .effects(EffectFilter::default(), &agent)
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].namespace, "billing");
    let e = engine
        .effect_resolve("billing", "refund", allow_retry(None), &agent)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "forbidden");
    assert!(e.to_string().contains("allow-answer"), "{e}");

    let reviewer = users::add_user(&engine, "rita", None, Role::Reviewer, "a long password 1")
        .await
        .unwrap();
    let rita = Principal::User(reviewer.identity());
    assert_eq!(
        engine
            .effects_in_doubt(None, &rita)
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        engine
            .effect_resolve("billing", "refund", allow_retry(None), &rita)
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    let admin = users::add_user(&engine, "root", None, Role::Admin, "a long password 2")
        .await
        .unwrap();
    let root = Principal::User(admin.identity());
    assert_eq!(engine.effects_in_doubt(None, &root).await.unwrap().len(), 2);
    // an admin resolves as themselves, whatever `by` says
    let after = engine
        .effect_resolve("billing", "refund", allow_retry(Some(1)), &root)
        .await
        .unwrap();
    assert_eq!(after.resolved_by.as_deref(), Some("root"));
    // an admin does not begin effects (agents do)
    assert_eq!(
        engine
            .effect_begin("default", "x", None, None, &root)
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    // the ops key may resolve in its namespace
    engine
        .effect_begin("billing", "refund", Some(&tok(3)), Some("w"), &agent)
        .await
        .unwrap();
    let after = engine
        .effect_resolve("billing", "refund", mark_done(json!(7), Some(2)), &ops)
        .await
        .unwrap();
    assert_eq!(after.state, EffectState::Done);
    engine.close().await;
}

/// The effect audit trail is append-only in the database itself, and its hash chain finds an
/// edited row.
async fn the_audit_trail_is_append_only(db: Db) {
    let engine = db.open().await;
    let Begin::Run { token, .. } = run_token(&engine, "default", "k", &tok(1)).await else {
        panic!()
    };
    engine
        .effect_finish("default", "k", &token, json!(1), &T)
        .await
        .unwrap();
    assert!(
        db.raw_execute("UPDATE inloop_effect_audit SET actor = 'mallory'")
            .await
            .is_err()
    );
    assert!(
        db.raw_execute("DELETE FROM inloop_effect_audit")
            .await
            .is_err()
    );
    let mut events = engine.effect_audit("default", "k", &T).await.unwrap();
    assert!(verify_chain(&events).ok);
    events[1].data = json!({"attempt": 1, "result_sha256": "forged"});
    let check = verify_chain(&events);
    assert!(!check.ok);
    assert_eq!(check.broken_at_seq, Some(2));
    let _ = effects::kind::STARTED;
    engine.close().await;
}

/// The REST API through the remote client: the same outcomes and typed errors, a retried
/// begin is the same attempt, resolve needs a key that may act for people.
async fn rest_api_and_remote_client(db: Db) {
    let engine = db.open().await;
    let (_, agent_secret) = create_api_key(&engine, "agent", "billing", false)
        .await
        .unwrap();
    let (_, ops_secret) = create_api_key(&engine, "ops", "billing", true)
        .await
        .unwrap();
    let server = serve_engine(engine.clone(), Default::default()).await;
    let agent = RemoteEngine::new(&server.base, &agent_secret).unwrap();
    let ops = RemoteEngine::new(&server.base, &ops_secret).unwrap();
    let key = "refund/A-1 ü?&";
    let token = tok(1);
    let Begin::Run { attempt: 1, .. } = agent
        .effect_begin("billing", key, Some(&token), Some("node:h:1"))
        .await
        .unwrap()
    else {
        panic!()
    };
    // the same token again (a retry whose answer was lost): run, not in doubt
    assert!(matches!(
        agent
            .effect_begin("billing", key, Some(&token), None)
            .await
            .unwrap(),
        Begin::Run { attempt: 1, .. }
    ));
    let e = agent
        .effect_begin("billing", key, None, None)
        .await
        .unwrap_err();
    match &e {
        Error::EffectInDoubt {
            key: k,
            started_by,
            attempt,
            ..
        } => {
            assert_eq!((k.as_str(), *attempt), (key, 1));
            assert_eq!(started_by.as_deref(), Some("node:h:1"));
        }
        other => panic!("not rebuilt: {other:?}"),
    }
    // the gauge people alert on
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "inloop_effects_in_doubt 1"),
        "{metrics}"
    );
    let listed = agent
        .effects(EffectFilter {
            state: Some("in_doubt".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    assert_eq!(
        agent
            .effect_resolve("billing", key, allow_retry(Some(1)))
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        agent
            .effect_begin("default", key, None, None)
            .await
            .unwrap_err()
            .code(),
        "forbidden"
    );
    let mut r = allow_retry(Some(1));
    r.by = None;
    let after = ops.effect_resolve("billing", key, r).await.unwrap();
    assert_eq!(after.resolved_by.as_deref(), Some("apikey:ops"));
    let Begin::Run { token, attempt: 2 } = agent
        .effect_begin("billing", key, None, None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let done = agent
        .effect_finish("billing", key, &token, json!({"refund": "re_1"}))
        .await
        .unwrap();
    assert_eq!(done.state, EffectState::Done);
    // the token is never sent over the API
    assert!(done.token.is_none());
    let e = agent
        .effect_abort("billing", key, &tok(7), Some("x"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::EffectConflict { .. }), "{e:?}");
    match agent
        .effect_begin("billing", key, None, None)
        .await
        .unwrap()
    {
        Begin::Done { result, .. } => assert_eq!(result, json!({"refund": "re_1"})),
        b => panic!("{b:?}"),
    }
    let events = agent.effect_audit("billing", key).await.unwrap();
    assert!(verify_chain(&events).ok);
    let kinds: HashSet<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains("retry_allowed") && kinds.contains("done"));
    assert_eq!(
        agent.effect("billing", "nope").await.unwrap_err().code(),
        "not_found"
    );
    // too large a result: 413 and the typed error
    let Begin::Run { token, .. } = agent
        .effect_begin("billing", "big", None, None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let e = agent
        .effect_finish("billing", "big", &token, json!("z".repeat(300 * 1024)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "result", .. }), "{e:?}");
    server.stop().await;
    engine.close().await;
}

conformance!(
    concurrent_begins_run_exactly_once,
    finish_then_begin_returns_the_result,
    begin_after_an_unfinished_begin_is_in_doubt,
    resolve_mark_done_records_the_result,
    allow_retry_and_failures_run_again,
    a_wrong_token_is_refused,
    limits_and_bad_input,
    who_may_act_on_effects,
    the_audit_trail_is_append_only,
    rest_api_and_remote_client,
);
