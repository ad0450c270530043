//! Rust-only: how precisely durable timers (reminders, escalation steps) fire: `fired_at -
//! due_at` as recorded on the task, with 10,000 timers pending.
//!
//!   cargo bench -p inloop-core --bench timers -- [N] [DATABASE_URL]
//!
//! Two phases on one database (a temp SQLite file by default):
//! 1. `N` tasks (default 10,000) whose reminder is due in an hour stay pending; 200 probe
//!    tasks get reminders due over the next 20 s. The engine's background sweep fires them;
//!    the figure is the probes' lateness: precision with many timers waiting.
//! 2. A burst: the `N` pending timers are made due over 30 s (by creating a second set of `N`
//!    tasks whose reminders fall in that window), all firing: lateness under load.
//!
//! Every fired timer is one row-locked transaction (audit row + outbox rows), the same path
//! `inloop serve` runs.

use std::time::{Duration, Instant};

use inloop_core::model::now_ms;
use inloop_core::policy::Policy;
use inloop_core::{Engine, EngineOptions, ListFilter, NewTask, Status};
use serde_json::json;

fn task(ns: &str, key: String, reminder_ms: u64) -> NewTask {
    NewTask {
        namespace: Some(ns.into()),
        key: Some(key),
        title: "timer".into(),
        payload: json!({}),
        response_schema: json!({"type": "boolean"}),
        policy: Some(Policy {
            reminders_ms: vec![reminder_ms],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates tasks whose reminders fall due at `due[i]` (ms since the epoch), 64 at a time.
async fn create_due(engine: &Engine, ns: &str, prefix: &str, due: &[i64]) {
    for (chunk_no, chunk) in due.chunks(64).enumerate() {
        let mut batch = Vec::new();
        for (j, d) in chunk.iter().enumerate() {
            let e = engine.clone();
            let ns = ns.to_string();
            let key = format!("{prefix}-{}", chunk_no * 64 + j);
            let ms = (d - now_ms()).max(1) as u64;
            batch.push(tokio::spawn(
                async move { e.create(task(&ns, key, ms)).await },
            ));
        }
        for b in batch {
            b.await.unwrap().expect("create");
        }
    }
}

/// Lateness (ms) of the fired reminders of tasks in `ns` whose key starts with `prefix`, and
/// how many are not fired yet.
async fn lateness(engine: &Engine, ns: &str, prefix: &str) -> (Vec<i64>, usize) {
    let mut out = Vec::new();
    let mut unfired = 0;
    let mut cursor = None;
    loop {
        let page = engine
            .list(ListFilter {
                namespace: Some(ns.into()),
                key_prefix: Some(prefix.into()),
                status: Some(Status::Pending),
                limit: Some(1000),
                cursor: cursor.take(),
                ..Default::default()
            })
            .await
            .expect("list");
        for t in &page.items {
            for x in &t.timers {
                match x.fired_at {
                    Some(f) => out.push(f - x.due_at),
                    None => unfired += 1,
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (out, unfired),
        }
    }
}

fn report(what: &str, mut late: Vec<i64>) {
    late.sort_unstable();
    let q = |p: f64| late[((late.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{what}: n={} p50={} ms p95={} ms p99={} ms max={} ms",
        late.len(),
        q(0.5),
        q(0.95),
        q(0.99),
        late[late.len() - 1]
    );
}

async fn wait_all(engine: &Engine, ns: &str, prefix: &str, within: Duration) -> Vec<i64> {
    let start = Instant::now();
    loop {
        let (late, unfired) = lateness(engine, ns, prefix).await;
        if unfired == 0 {
            return late;
        }
        assert!(
            start.elapsed() < within,
            "{unfired} timers of {prefix} not fired"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("inloop-timers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display()));
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("open");
    let ns = format!("timers-{}", std::process::id());

    let t0 = Instant::now();
    let far: Vec<i64> = (0..n).map(|_| now_ms() + 3_600_000).collect();
    create_due(&engine, &ns, "far", &far).await;
    println!(
        "{n} tasks with a reminder due in an hour created in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Phase 1: 200 probes due over 20 s, beside the pending ones.
    engine.start_background();
    let base = now_ms() + 2_000;
    let probes: Vec<i64> = (0..200).map(|i| base + i * 100).collect();
    create_due(&engine, &ns, "probe", &probes).await;
    let late = wait_all(&engine, &ns, "probe", Duration::from_secs(60)).await;
    report(
        &format!("probe timers with {n} timers pending (fired_at - due_at)"),
        late,
    );

    // Phase 2: a burst of n timers due over 30 s (created first, then they all come due).
    let t1 = Instant::now();
    let start = now_ms() + 5_000 + (n as i64) * 3; // after creating them
    let burst: Vec<i64> = (0..n as i64)
        .map(|i| start + i * 30_000 / n as i64)
        .collect();
    create_due(&engine, &ns, "burst", &burst).await;
    let created_in = t1.elapsed();
    if now_ms() > start {
        println!(
            "note: creating the burst took {:.1} s, past its first due time",
            created_in.as_secs_f64()
        );
    }
    let late = wait_all(&engine, &ns, "burst", Duration::from_secs(600)).await;
    report(&format!("burst of {n} timers due over 30 s"), late);
    engine.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
