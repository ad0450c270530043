//! A burst of concurrent writes in one process on SQLite waits its turn for the one writer
//! connection instead of failing: the soak's 10,000 agents creating at once got
//! `pool timed out while waiting for an open connection` (RELIABILITY.md, the load case),
//! because the writer's queue had the connection timeout.
//!
//! The connection timeout is set to 50 ms here, far below the time the burst takes to drain:
//! every create still succeeds, and so does every answer.

mod common;

use std::time::{Duration, Instant};

use common::{create_and_answer, run_sqlite};
use inloop_core::EngineOptions;

const BURST: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_burst_queues_for_the_writer_instead_of_timing_out() {
    run_sqlite(|db| async move {
        let mut opts = EngineOptions::default();
        opts.store.acquire_timeout = Duration::from_millis(50);
        let engine = db.open_with(opts).await;
        let started = Instant::now();
        let creates = (0..BURST).map(|i| tokio::spawn(create_and_answer(engine.clone(), i)));
        let results = futures_util::future::join_all(creates).await;
        let took = started.elapsed();
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.unwrap().err().map(|e| e.to_string()))
            .collect();
        eprintln!(
            "sqlite burst: {BURST} create+answer in {took:?}, {} failed",
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{} of {BURST} failed, first: {}",
            failed.len(),
            failed[0]
        );
        // The burst really outlasted the connection timeout: the test shows the queue waits.
        assert!(
            took > Duration::from_millis(50),
            "the burst took only {took:?}"
        );
    })
    .await;
}
