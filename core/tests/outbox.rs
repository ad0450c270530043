//! The channel outbox and webhooks, on both backends: rows written with the task, leased
//! delivery by several dispatchers, retries, the horizon, and lost leases; a real loopback
//! receiver verifies every signature.
//!
//!   cargo test -p inloop-core --test outbox

mod common;
#[path = "common/hook.rs"]
mod hook;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::Db;
use hook::{Behaviour, Hook};
use inloop_core::channels::{self, Channels, Settings};
use inloop_core::{Answer, Engine, NewTask, Status};
use serde_json::json;

fn task(key: &str, notify: &[&str]) -> NewTask {
    NewTask {
        title: format!("Approve {key}?"),
        payload: json!({"order": key}),
        response_schema: json!({"type": "object", "properties": {"approved": {"type": "boolean"}},
                                 "required": ["approved"]}),
        key: Some(key.into()),
        notify: notify.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Channels delivering `webhook:hook` to `hook`, with fast retries.
fn channels_for(hook: &Hook, extra: &[(&str, &str)]) -> Arc<Channels> {
    let mut env: BTreeMap<String, String> = hook.env("hook");
    env.insert("INLOOP_CHANNEL_RETRY_BASE_MS".into(), "20".into());
    env.insert("INLOOP_CHANNEL_RETRY_MAX_SECS".into(), "1".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Arc::new(Channels::new(Settings::resolve(None, &env, None).unwrap()).unwrap())
}

/// Runs `dispatch_once` until `done` holds (bounded).
async fn pump(engine: &Engine, ch: &Channels, worker: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "outbox did not settle"
        );
        if channels::dispatch_once(engine, ch, worker).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn states(engine: &Engine, id: uuid::Uuid) -> Vec<(String, String, String)> {
    channels::deliveries(engine, id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (format!("{}:{}", d.channel, d.target), d.event, d.state))
        .collect()
}

async fn audit_kinds(engine: &Engine, id: uuid::Uuid, kind: &str) -> usize {
    engine
        .audit(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == kind)
        .count()
}

// ---------------------------------------------------------------------------------------------

/// Creating writes one row per notify entry; a replayed create adds none; the end adds one
/// `ended` row per channel that updates (webhooks), once, in the same transaction.
async fn rows_follow_the_task(db: Db) {
    let engine = db.open().await;
    let notify = [
        "webhook:hook",
        "email:ops@acme.test",
        "webhook:hook",
        "webhook:crm",
    ];
    let first = engine.create(task("r-1", &notify)).await.unwrap();
    assert!(first.created);
    let id = first.task.id;
    let again = engine.create(task("r-1", &notify)).await.unwrap();
    assert!(!again.created);
    let rows = channels::deliveries(&engine, id).await.unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|d| d.state == "pending" && d.event == "created" && d.attempts == 0)
    );
    let keys: HashSet<_> = rows.iter().map(|d| d.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 3);
    // A concurrent replay from another process adds nothing either.
    let other = db.open().await;
    let (a, b) = tokio::join!(
        engine.create(task("r-1", &notify)),
        other.create(task("r-1", &notify))
    );
    assert!(!a.unwrap().created && !b.unwrap().created);
    assert_eq!(channels::deliveries(&engine, id).await.unwrap().len(), 3);

    engine
        .answer(
            id,
            Answer {
                response: json!({"approved": true}),
                by: "alice".into(),
                channel: "api".into(),
            },
        )
        .await
        .unwrap();
    assert!(engine.cancel(id, "bob", "api", None).await.is_err());
    let s = states(&engine, id).await;
    assert_eq!(
        s.iter()
            .filter(|r| r.1 == "ended")
            .map(|r| r.0.clone())
            .collect::<Vec<_>>(),
        vec!["webhook:hook".to_string(), "webhook:crm".to_string()],
        "{s:?}"
    );
    // A timeout is an end too.
    let mut t = task("r-2", &["webhook:hook"]);
    t.timeout_ms = Some(1);
    let id2 = engine.create(t).await.unwrap().task.id;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(engine.expire(id2).await.unwrap().status, Status::TimedOut);
    assert_eq!(
        states(&engine, id2).await,
        vec![
            ("webhook:hook".into(), "created".into(), "pending".into()),
            ("webhook:hook".into(), "ended".into(), "pending".into())
        ]
    );
}

/// Two dispatchers on two engines (two replicas) work one outbox: every delivery reaches the
/// receiver exactly once, signed; every row ends `done` with one `delivered` audit row.
async fn two_dispatchers_deliver_each_row_once(db: Db) {
    let hook = Hook::start(Behaviour::default()).await;
    let ch = channels_for(&hook, &[]);
    let a = db.open().await;
    let b = db.open().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            a.create(task(&format!("p-{i}"), &["webhook:hook"]))
                .await
                .unwrap()
                .task
                .id,
        );
    }
    for id in &ids[..10] {
        a.cancel(*id, "bob", "api", Some("changed my mind"))
            .await
            .unwrap();
    }
    let expected = 40 + 10;
    let run = |engine: Engine, worker: &'static str| {
        let ch = Arc::clone(&ch);
        let hook = Arc::clone(&hook);
        async move {
            pump(&engine, &ch, worker, async || hook.hits().len() >= expected).await;
        }
    };
    tokio::join!(run(a.clone(), "a"), run(b.clone(), "b"));
    // Let any straggler (a double delivery) arrive before counting.
    for _ in 0..5 {
        channels::dispatch_once(&a, &ch, "a").await.unwrap();
    }
    let hits = hook.hits();
    assert_eq!(hits.len(), expected, "each delivery exactly once");
    assert!(hits.iter().all(|h| h.verified && h.status == 204));
    let ids_seen: HashSet<_> = hits.iter().map(|h| h.id.clone()).collect();
    assert_eq!(ids_seen.len(), expected);
    let created = hits
        .iter()
        .filter(|h| h.body["type"] == "task.created")
        .count();
    let ended: Vec<_> = hits
        .iter()
        .filter(|h| h.body["type"] == "task.ended")
        .collect();
    assert_eq!((created, ended.len()), (40, 10));
    assert!(
        ended
            .iter()
            .all(|h| h.body["data"]["task"]["status"] == "cancelled")
    );
    for id in &ids {
        for d in channels::deliveries(&a, *id).await.unwrap() {
            assert_eq!((d.state.as_str(), d.attempts), ("done", 1), "{d:?}");
        }
    }
    assert_eq!(audit_kinds(&a, ids[0], "delivered").await, 2);
    assert_eq!(audit_kinds(&a, ids[20], "delivered").await, 1);
    assert!(a.verify_audit(ids[0]).await.unwrap().ok);
}

/// A receiver that fails twice gets the event on the third attempt, exactly once, with the
/// same id every time; each attempt is recorded with its error.
async fn failing_target_retries_then_succeeds_once(db: Db) {
    let hook = Hook::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let ch = channels_for(&hook, &[]);
    let engine = db.open().await;
    let id = engine
        .create(task("f-1", &["webhook:hook"]))
        .await
        .unwrap()
        .task
        .id;
    pump(&engine, &ch, "w", async || {
        states(&engine, id).await.iter().all(|r| r.2 == "done")
    })
    .await;
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
    let d = &channels::deliveries(&engine, id).await.unwrap()[0];
    assert_eq!(d.attempts, 3);
    assert_eq!(d.idempotency_key, hits[0].id);
    let attempts = channels::attempts(&engine, d.id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        vec!["retry", "retry", "ok"]
    );
    assert!(
        attempts[0].error.as_deref().unwrap().contains("500"),
        "{attempts:?}"
    );
    assert_eq!(audit_kinds(&engine, id, "delivered").await, 1);
    assert_eq!(audit_kinds(&engine, id, "delivery_failed").await, 0);
}

/// Past the horizon the outbox gives up: `failed`, one `delivery_failed` audit row with the
/// last error, and no more attempts. An unknown webhook name fails at once.
async fn horizon_gives_delivery_failed(db: Db) {
    let hook = Hook::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let ch = channels_for(&hook, &[("INLOOP_CHANNEL_RETRY_HORIZON_SECS", "1")]);
    let engine = db.open().await;
    let id = engine
        .create(task("h-1", &["webhook:hook", "webhook:nowhere"]))
        .await
        .unwrap()
        .task
        .id;
    pump(&engine, &ch, "w", async || {
        states(&engine, id).await.iter().all(|r| r.2 == "failed")
    })
    .await;
    let rows = channels::deliveries(&engine, id).await.unwrap();
    assert!(rows[0].attempts >= 3, "{rows:?}");
    assert!(
        rows[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("gave up after"),
        "{rows:?}"
    );
    assert_eq!(rows[1].attempts, 1);
    assert!(
        rows[1]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no webhook named \"nowhere\"")
    );
    let failed: Vec<_> = engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "delivery_failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].channel.as_deref(), Some("webhook"));
    assert!(
        failed
            .iter()
            .any(|e| e.data["error"].as_str().unwrap().contains("500"))
    );
    let n = hook.hits().len();
    for _ in 0..3 {
        channels::dispatch_once(&engine, &ch, "w").await.unwrap();
    }
    assert_eq!(hook.hits().len(), n, "no attempt after giving up");
    // Ending the task: the update for a target that never showed it is skipped, not sent.
    engine.cancel(id, "bob", "api", None).await.unwrap();
    pump(&engine, &ch, "w", async || {
        states(&engine, id).await.iter().all(|r| r.2 != "pending")
    })
    .await;
    assert_eq!(hook.hits().len(), n);
    assert!(
        states(&engine, id)
            .await
            .iter()
            .filter(|r| r.1 == "ended")
            .all(|r| r.2 == "skipped")
    );
}

/// A dispatcher that dies mid-delivery (its task aborted) keeps its lease until it expires;
/// then another one delivers the same row with the same idempotency key, and the row is
/// settled once.
async fn a_dead_dispatchers_lease_expires(db: Db) {
    let hook = Hook::start(Behaviour {
        hold_first: Some(Duration::from_millis(600)),
        ..Default::default()
    })
    .await;
    let ch = channels_for(&hook, &[("INLOOP_CHANNEL_LEASE_SECS", "2")]);
    let engine = db.open().await;
    let id = engine
        .create(task("l-1", &["webhook:hook"]))
        .await
        .unwrap()
        .task
        .id;
    let dead = channels::spawn_dispatcher(engine.clone(), Arc::clone(&ch), "dead".into());
    common::eventually("the first request", Duration::from_secs(10), || {
        !hook.hits().is_empty()
    })
    .await;
    dead.abort();
    let _ = dead.await;
    let t0 = std::time::Instant::now();
    // While the lease holds, nobody else may take the row.
    assert_eq!(
        channels::dispatch_once(&engine, &ch, "live").await.unwrap(),
        0
    );
    pump(&engine, &ch, "live", async || {
        states(&engine, id).await.iter().all(|r| r.2 == "done")
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "redelivered before the lease expired"
    );
    let hits = hook.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, hits[1].id);
    let d = &channels::deliveries(&engine, id).await.unwrap()[0];
    assert_eq!(d.attempts, 2);
    let attempts = channels::attempts(&engine, d.id).await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "the dead attempt left no record: {attempts:?}"
    );
    assert_eq!(
        (attempts[0].attempt, attempts[0].worker.as_str()),
        (2, "live")
    );
    assert_eq!(audit_kinds(&engine, id, "delivered").await, 1);
}

/// `inloop serve` (the real binary) is SIGKILLed while deliveries are in flight and pending;
/// after a restart every delivery arrives, each under its own stable id, the ones that were in
/// flight at most once more, and every row is settled once (one `delivered` audit row).
async fn killed_server_delivers_each_once_after_restart(db: Db) {
    let hook = Hook::start(Behaviour {
        hold_first: Some(Duration::from_secs(3)),
        ..Default::default()
    })
    .await;
    let engine = db.open().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            engine
                .create(task(&format!("k-{i}"), &["webhook:hook"]))
                .await
                .unwrap()
                .task
                .id,
        );
    }
    let start = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inloop"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("INLOOP_DATABASE_URL", &db.url)
            .env("INLOOP_CHANNEL_LEASE_SECS", "2")
            .env("INLOOP_CHANNEL_RETRY_BASE_MS", "50")
            .env("INLOOP_CHANNEL_POLL_MS", "50")
            .env("INLOOP_LOG", "warn")
            .envs(hook.env("hook"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().expect("start inloop serve")
    };
    let mut first = start();
    common::eventually("deliveries in flight", Duration::from_secs(20), || {
        hook.hits().len() >= 5
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Requests already written to the socket still reach the receiver after the kill: let
    // them land (no new arrival for 500 ms) before noting what was in flight.
    let mut last = hook.hits().len();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = hook.hits().len();
        if now == last {
            break;
        }
        last = now;
    }
    let in_flight: HashSet<String> = hook.hits().into_iter().map(|h| h.id).collect();
    hook.set(Behaviour::default());
    let pending_at_kill = {
        let mut n = 0;
        for id in &ids {
            n += channels::deliveries(&engine, *id)
                .await
                .unwrap()
                .iter()
                .filter(|d| d.state == "pending")
                .count();
        }
        n
    };
    assert_eq!(
        pending_at_kill, 20,
        "nothing was settled: every request was held"
    );
    let mut second = start();
    let t0 = std::time::Instant::now();
    loop {
        let mut done = 0;
        for id in &ids {
            done += channels::deliveries(&engine, *id)
                .await
                .unwrap()
                .iter()
                .filter(|d| d.state == "done")
                .count();
        }
        if done == 20 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "only {done} of 20 delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let hits = hook.hits();
    assert!(hits.iter().all(|h| h.verified));
    let mut per_id: std::collections::HashMap<String, usize> = Default::default();
    for h in &hits {
        *per_id.entry(h.id.clone()).or_default() += 1;
    }
    // Every delivery arrived under its own id: a receiver deduplicating on webhook-id
    // processes each exactly once.
    assert_eq!(per_id.len(), 20);
    for (id, n) in &per_id {
        if in_flight.contains(id) {
            assert!(*n <= 2, "{id} arrived {n} times");
        } else {
            assert_eq!(
                *n, 1,
                "{id} was not in flight at the kill but arrived {n} times"
            );
        }
    }
    for id in &ids {
        assert_eq!(audit_kinds(&engine, *id, "delivered").await, 1);
        let d = &channels::deliveries(&engine, *id).await.unwrap()[0];
        assert!(per_id.contains_key(&d.idempotency_key));
    }
}

conformance!(
    killed_server_delivers_each_once_after_restart,
    rows_follow_the_task,
    two_dispatchers_deliver_each_row_once,
    failing_target_retries_then_succeeds_once,
    horizon_gives_delivery_failed,
    a_dead_dispatchers_lease_expires,
);

/// Startup validation and `inloop channels check`: a misconfigured channel fails loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_channels_fail_loudly() {
    let hook = Hook::start(Behaviour::default()).await;
    let dir = tempdir();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_inloop"))
            .args(args)
            .current_dir(&dir)
            .env(
                "INLOOP_DATABASE_URL",
                format!("sqlite://{}/x.db", dir.display()),
            )
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let url = hook.url.as_str();
    let secret = hook.secret.as_str();
    let good = [
        ("INLOOP_WEBHOOK_HOOK_URL", url),
        ("INLOOP_WEBHOOK_HOOK_SECRET", secret),
    ];
    let (code, out) = run(&["channels", "check"], &good);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok  webhook:hook"), "{out}");
    assert!(hook.hits().is_empty(), "check sends nothing");

    let weak = [
        ("INLOOP_WEBHOOK_HOOK_URL", url),
        ("INLOOP_WEBHOOK_HOOK_SECRET", "hunter2"),
    ];
    let (code, out) = run(&["channels", "check"], &weak);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("whsec_"), "{out}");
    // The server refuses to start with it, before listening.
    let (code, out) = run(&["serve", "--bind", "127.0.0.1:0"], &weak);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("webhook \"hook\"") && out.contains("whsec_"),
        "{out}"
    );
    let half = [("INLOOP_WEBHOOK_HOOK_URL", url)];
    let (code, out) = run(&["serve", "--bind", "127.0.0.1:0"], &half);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("INLOOP_WEBHOOK_HOOK_SECRET"), "{out}");
    let plain = [
        ("INLOOP_WEBHOOK_HOOK_URL", "http://example.com/h"),
        ("INLOOP_WEBHOOK_HOOK_SECRET", secret),
    ];
    let (code, out) = run(&["channels", "check"], &plain);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("https"), "{out}");
    // Unreachable: a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/h", l.local_addr().unwrap())
    };
    let down = [
        ("INLOOP_WEBHOOK_HOOK_URL", closed.as_str()),
        ("INLOOP_WEBHOOK_HOOK_SECRET", secret),
    ];
    let (code, out) = run(&["channels", "check"], &down);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot connect"), "{out}");
    // Callbacks: both halves or neither; a bad allow entry names itself.
    let half = [("INLOOP_CALLBACK_ALLOW", "http://127.0.0.1:")];
    let (code, out) = run(&["serve", "--bind", "127.0.0.1:0"], &half);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("INLOOP_CALLBACK_SECRET"), "{out}");
    let plain = [
        ("INLOOP_CALLBACK_ALLOW", "http://engine.internal/hooks/"),
        ("INLOOP_CALLBACK_SECRET", secret),
    ];
    let (code, out) = run(&["channels", "check"], &plain);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("http://engine.internal/hooks/") && out.contains("https"),
        "{out}"
    );
    let both = [
        (
            "INLOOP_CALLBACK_ALLOW",
            "http://127.0.0.1:,https://engine.internal/hooks/",
        ),
        ("INLOOP_CALLBACK_SECRET", secret),
    ];
    let (code, out) = run(&["channels", "check"], &both);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ok  callbacks -> http://127.0.0.1:*/, https://engine.internal:443/hooks/"),
        "{out}"
    );
    let (code, out) = run(&["channels", "secret"], &[]);
    assert_eq!(code, Some(0));
    assert!(
        out.trim().starts_with("whsec_") && out.trim().len() > 40,
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("inloop-channels-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
