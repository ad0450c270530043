//! SQLite wake-ups across processes: a waiter in this process resumes when another process
//! (the `inloop` CLI) answers its task, through the push (inotify on the database's `-wal`
//! file) and through the tick it falls back to where inotify is missing.
//!
//! Each case makes the other path useless (an hour-long tick with the push; no push with the
//! tick), so a wake within the bound can only have come from the path under test.

mod common;

use std::time::Duration;

use common::{Db, eventually};
use inloop_core::{Engine, EngineOptions, NewTask, Status};
use serde_json::json;

const HOUR: Duration = Duration::from_secs(3600);

fn task(key: &str) -> NewTask {
    NewTask {
        key: Some(key.into()),
        title: "Approve the refund?".into(),
        payload: json!({"order_id": "A-1"}),
        response_schema: json!({
            "type": "object",
            "properties": {"approved": {"type": "boolean"}},
            "required": ["approved"]
        }),
        ..Default::default()
    }
}

/// Parks a waiter on a new task, answers it with `inloop tasks answer` (a separate process)
/// and checks the waiter resumes with that answer within 5 s. Three rounds: the watcher keeps
/// working after its first wake.
async fn answer_from_another_process_wakes(db: &Db, engine: &Engine) {
    for round in 0..3 {
        let id = engine
            .create(task(&format!("cross-{round}")))
            .await
            .unwrap()
            .task
            .id;
        let e = engine.clone();
        let waiter = tokio::spawn(async move { e.await_response(id).await });
        let e = engine.clone();
        eventually("the waiter to park", Duration::from_secs(5), move || {
            e.watched() == 1
        })
        .await;
        // Let the waiter's first read (and the watcher's start) finish, so that the wake path
        // is what sees the answer.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiter.is_finished(),
            "the waiter returned before the answer"
        );

        let url = db.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_inloop"))
                .args(["tasks", "answer", &id.to_string(), r#"{"approved": true}"#])
                .args(["--by", "other-process", "--database-url", &url])
                .env("INLOOP_LOG", "warn")
                .output()
        })
        .await
        .unwrap()
        .expect("run inloop tasks answer");
        assert!(
            out.status.success(),
            "inloop tasks answer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let done = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the waiter did not wake within 5 s"))
            .unwrap()
            .unwrap();
        assert_eq!(done.status, Status::Completed);
        assert_eq!(done.answered_by.as_deref(), Some("other-process"));
        assert_eq!(done.response, Some(json!({"approved": true})));
        let e = engine.clone();
        eventually("the waiter to unpark", Duration::from_secs(2), move || {
            e.watched() == 0
        })
        .await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_wakes_a_waiter_on_an_answer_from_another_process() {
    common::run_sqlite(|db| async move {
        let engine = db
            .open_with(EngineOptions {
                sqlite_push: true,
                sqlite_poll: HOUR,
                sqlite_safety_check: HOUR,
                ..Default::default()
            })
            .await;
        answer_from_another_process_wakes(&db, &engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_fallback_wakes_a_waiter_on_an_answer_from_another_process() {
    common::run_sqlite(|db| async move {
        let engine = db
            .open_with(EngineOptions {
                sqlite_push: false,
                sqlite_poll: Duration::from_millis(10),
                sqlite_safety_check: HOUR,
                ..Default::default()
            })
            .await;
        answer_from_another_process_wakes(&db, &engine).await;
    })
    .await;
}
