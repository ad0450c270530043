//! Rust-only: memory and idle CPU of N parked waiters in one process (no Python on top).
//!
//!   cargo bench -p inloop-core --bench parked -- [N] [DATABASE_URL]
//!
//! Default: 100,000 waiters on a temp SQLite file. Prints RSS before and after parking and the
//! CPU used over a 5 s idle window, then answers a sample from a second engine and checks
//! those waiters wake.

use std::time::{Duration, Instant};

use inloop_core::{Answer, Engine, EngineOptions, NewTask, Status};
use serde_json::json;

fn rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("inloop-parked-{}", std::process::id()));
    let url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.display()));
    let engine = Engine::open(&url, EngineOptions::default())
        .await
        .expect("open");
    let ns = format!("parked-{}", std::process::id());
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut batch = Vec::new();
    for i in 0..n {
        let e = engine.clone();
        let ns = ns.clone();
        batch.push(tokio::spawn(async move {
            e.create(NewTask {
                namespace: Some(ns),
                key: Some(format!("p{i}")),
                title: "park".into(),
                payload: json!({"i": i}),
                response_schema: json!({"type": "boolean"}),
                ..Default::default()
            })
            .await
            .expect("create")
            .task
            .id
        }));
        if batch.len() == 256 || i + 1 == n {
            for h in batch.drain(..) {
                ids.push(h.await.unwrap());
            }
        }
    }
    println!("created {n} tasks in {:.1} s", t0.elapsed().as_secs_f64());
    let probe = engine.wait(ids[0], None);
    println!(
        "size of a wait future: {} bytes (a parked waiter's state, before tokio's task header)",
        std::mem::size_of_val(&probe)
    );
    drop(probe);
    let before = rss_mb();
    let t0 = Instant::now();
    let waiters: Vec<_> = ids
        .iter()
        .map(|&id| {
            let e = engine.clone();
            tokio::spawn(async move { e.wait(id, None).await })
        })
        .collect();
    while engine.parked() < n {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("parked {n} waiters in {:.1} s", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let parked = rss_mb();
    let (c0, w0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = (cpu_seconds() - c0) / w0.elapsed().as_secs_f64() * 100.0;
    println!(
        "RSS {before:.0} MB before parking, {parked:.0} MB parked (+{:.0} MB, {:.2} KB per waiter)",
        parked - before,
        (parked - before) * 1024.0 / n as f64
    );
    println!("CPU while idle over 5 s: {cpu:.2}% of one core");
    let other = Engine::open(&url, EngineOptions::default())
        .await
        .expect("open");
    let step = (n / 1000).max(1);
    let t0 = Instant::now();
    let mut answered = Vec::new();
    let mut answering = Vec::new();
    for (i, id) in ids.iter().enumerate().step_by(step) {
        let a = Answer {
            response: json!(true),
            by: "bench".into(),
            channel: "bench".into(),
        };
        let (other, id) = (other.clone(), *id);
        answering.push(tokio::spawn(async move { other.answer(id, a).await }));
        answered.push(i);
    }
    for h in answering {
        h.await.unwrap().expect("answer");
    }
    println!(
        "{} concurrent answers from a second engine took {:.2} s",
        answered.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut waiters: Vec<Option<_>> = waiters.into_iter().map(Some).collect();
    for i in &answered {
        let t = waiters[*i].take().unwrap().await.unwrap().unwrap();
        assert_eq!(t.status, Status::Completed);
    }
    println!(
        "answered {} from a second engine: all woke in {:.2} s",
        answered.len(),
        t0.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(0);
}
