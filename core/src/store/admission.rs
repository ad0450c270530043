//! Admission in front of the PostgreSQL pool: a fair (FIFO) queue of turns, one per pooled
//! connection, so that a burst of calls waits its turn instead of failing.
//!
//! Without it, every call waits in the pool itself, and the pool gives up after its acquire
//! timeout (10 s by default) whether the database is busy or gone: 10,000 agents starting
//! within 10 s got thousands of `pool timed out` errors from a healthy database
//! (RELIABILITY.md, the load case). With it, a call first waits for a turn (up to
//! [`QUEUE_TIMEOUT`]); holding one, it meets a free connection, so the pool's timeout is left to
//! measure only what it should: how long opening a connection to the database takes.
//!
//! A longer queue must not hide an outage. A call that holds a turn and fails because the
//! database cannot be reached records the outage; until a later call succeeds, a call that
//! would have to queue fails at once with that error instead of waiting behind it. Calls that
//! find a free turn always try, so the first one to get through clears the record.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// How long a call may wait in this process's queue for its turn at the database (SQLite's
/// one writer connection, PostgreSQL's admission). Load, not an outage, makes this queue long.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(600);

/// The turns, and the outage the last failed call saw.
pub(crate) struct Admission {
    turns: Semaphore,
    outage: Mutex<Option<String>>,
    queue_timeout: Duration,
}

impl Admission {
    /// `turns` calls at a time (the pool's size); the rest queue up to `queue_timeout`.
    pub(crate) fn new(turns: u32, queue_timeout: Duration) -> Admission {
        Admission {
            turns: Semaphore::new(turns.max(1) as usize),
            outage: Mutex::new(None),
            queue_timeout,
        }
    }

    /// Runs `call` in its turn, first come first served.
    pub(crate) async fn run<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let _turn = match self.turns.try_acquire() {
            Ok(turn) => turn,
            Err(_) => {
                self.refuse_while_unreachable()?;
                let turn = tokio::time::timeout(self.queue_timeout, self.turns.acquire())
                    .await
                    .map_err(|_| {
                        Error::Database(format!(
                            "waited {} s for a turn at the database: it is overloaded",
                            self.queue_timeout.as_secs()
                        ))
                    })?
                    .map_err(|_| Error::Database("the store is closed".into()))?;
                // The outage may have begun while this call queued.
                self.refuse_while_unreachable()?;
                turn
            }
        };
        let result = call.await;
        match &result {
            Ok(_) => *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = None,
            Err(Error::Database(m)) if is_outage(m) => {
                *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = Some(m.clone());
            }
            // Refused input or a rule: the database answered.
            Err(_) => {}
        }
        result
    }

    fn refuse_while_unreachable(&self) -> Result<()> {
        match &*self.outage.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(m) => Err(Error::Database(format!(
                "PostgreSQL is unreachable ({m}); not queueing behind it"
            ))),
            None => Ok(()),
        }
    }
}

/// What sqlx (and PostgreSQL going down) says when the database cannot be reached, as our
/// `Error::Database` carries it (`sqlx::Error`'s display; pinned by the tests below).
const OUTAGES: &[&str] = &[
    "pool timed out while waiting for an open connection",
    "error communicating with database",
    "error occurred while attempting to establish a TLS connection",
    "attempted to acquire a connection on a closed pool",
    "encountered unexpected or invalid data",
    // SQLSTATE 57P01-57P03, sent while PostgreSQL shuts down or starts up.
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
];

fn is_outage(message: &str) -> bool {
    OUTAGES.iter().any(|o| message.contains(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn message(e: sqlx::Error) -> String {
        match Error::from(e) {
            Error::Database(m) => m,
            other => panic!("not a database error: {other:?}"),
        }
    }

    #[test]
    fn sqlx_outage_errors_are_recognised_and_input_errors_are_not() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            sqlx::Error::Tls("handshake".into()),
            sqlx::Error::Protocol("eof".into()),
        ] {
            let m = message(e);
            assert!(is_outage(&m), "{m}");
        }
        for m in [
            "error returned from database: duplicate key value violates unique constraint",
            "no rows returned by a query that expected to return at least one row",
        ] {
            assert!(!is_outage(m), "{m}");
        }
    }

    /// More calls than turns all run, in arrival order, while the database answers.
    #[tokio::test]
    async fn a_burst_queues_in_order_and_every_call_runs() {
        let gate = Arc::new(Admission::new(2, Duration::from_secs(5)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let calls = (0..50).map(|i| {
            let (gate, order, running) = (gate.clone(), order.clone(), running.clone());
            tokio::spawn(async move {
                gate.run(async {
                    assert!(
                        running.fetch_add(1, Ordering::SeqCst) < 2,
                        "more than 2 at once"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    order.lock().unwrap().push(i);
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        });
        for c in futures_util::future::join_all(calls).await {
            c.unwrap().unwrap();
        }
        assert_eq!(order.lock().unwrap().len(), 50);
    }

    /// While the last call met an outage, a call that would queue fails at once; one that
    /// finds a free turn tries, and its success ends the outage.
    #[tokio::test]
    async fn an_outage_fails_queued_calls_fast_until_a_call_succeeds() {
        let gate = Arc::new(Admission::new(1, Duration::from_secs(60)));
        let down = || async {
            Err::<(), _>(Error::Database(
                "pool timed out while waiting for an open connection".into(),
            ))
        };
        assert!(gate.run(down()).await.is_err());
        // Hold the one turn, then ask: refused now, not after the queue timeout.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.run(async {
                    let _ = released.await;
                    Err::<(), _>(Error::Database(
                        "error communicating with database: reset".into(),
                    ))
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let t = std::time::Instant::now();
        let refused = gate.run(async { Ok(()) }).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(refused.to_string().contains("unreachable"), "{refused}");
        release.send(()).unwrap();
        assert!(holder.await.unwrap().is_err());
        // A free turn tries; its success clears the outage for everyone.
        gate.run(async { Ok(()) }).await.unwrap();
        assert!(gate.refuse_while_unreachable().is_ok());
        // An error from a live database (bad input) is not an outage.
        let _ = gate
            .run(async { Err::<(), _>(Error::InvalidArgument("no".into())) })
            .await;
        assert!(gate.refuse_while_unreachable().is_ok());
    }
}
