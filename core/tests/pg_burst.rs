//! PostgreSQL admission (`core/src/store/admission.rs`): a burst of concurrent calls in one
//! process waits its turn for the pool instead of failing, and an unreachable database still
//! fails every call promptly instead of making the queue wait behind it.
//!
//! Found by the soak (RELIABILITY.md, the load case): 10,000 agents starting within 10 s got
//! 4,954 `pool timed out while waiting for an open connection` errors from a healthy
//! database, because every call waited in the pool with its connection timeout.

mod common;
#[path = "common/cut_proxy.rs"]
mod cut_proxy;

use std::time::{Duration, Instant};

use common::{Db, create_and_answer, run_postgres};
use inloop_core::{EngineOptions, Error};

const BURST: usize = 3_000;

/// 3,000 create+answer at once on 4 turns with a 500 ms connection timeout: the burst takes
/// several times that, and not one call fails. (Not less than 500 ms: sqlx hands a released
/// connection back to the pool from a spawned task, which a runtime busy with thousands of
/// tasks may run tens of milliseconds later.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_queues_for_the_pool_instead_of_timing_out() {
    run_postgres("a_burst_queues_for_the_pool", |db: Db| async move {
        let mut opts = EngineOptions::default();
        opts.store.acquire_timeout = Duration::from_millis(500);
        opts.store.max_connections = 4;
        let engine = db.open_with(opts).await;
        let started = Instant::now();
        let calls = (0..BURST).map(|i| tokio::spawn(create_and_answer(engine.clone(), i)));
        let results = futures_util::future::join_all(calls).await;
        let took = started.elapsed();
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.unwrap().err().map(|e| e.to_string()))
            .collect();
        eprintln!(
            "postgres burst: {BURST} create+answer in {took:?}, {} failed",
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{} of {BURST} failed, first: {}; last: {}",
            failed.len(),
            failed[0],
            failed[failed.len() - 1]
        );
        assert!(
            took > Duration::from_secs(1),
            "the burst took only {took:?}"
        );
        engine.close().await;
    })
    .await;
}

/// With the database gone, 40 calls on 2 turns and a 1 s connection timeout all fail within
/// a few seconds: without the outage record, each pair would wait its turn and then its own
/// second, 20 s in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_queued_calls_promptly() {
    run_postgres(
        "an_unreachable_database_fails_promptly",
        |db: Db| async move {
            let (proxy, url) = cut_proxy::CutProxy::in_front_of(&db.url).await;
            let mut opts = EngineOptions::default();
            opts.store.acquire_timeout = Duration::from_secs(1);
            opts.store.max_connections = 2;
            let engine = Db {
                url,
                backend: db.backend,
            }
            .open_with(opts)
            .await;
            create_and_answer(engine.clone(), 0).await.unwrap();
            proxy.cut();
            let started = Instant::now();
            let calls = (1..=40).map(|i| tokio::spawn(create_and_answer(engine.clone(), i)));
            let results = futures_util::future::join_all(calls).await;
            let took = started.elapsed();
            for r in results {
                match r.unwrap() {
                    Err(Error::Database(_)) => {}
                    other => panic!("expected a database error, got {other:?}"),
                }
            }
            eprintln!("postgres away: 40 calls failed in {took:?}");
            assert!(
                took < Duration::from_secs(6),
                "40 calls took {took:?} to fail"
            );
        },
    )
    .await;
}
