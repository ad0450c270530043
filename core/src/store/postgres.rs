//! PostgreSQL backend: row locks for transitions, `NOTIFY` in the committing transaction, one
//! `LISTEN` connection per process.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};

use crate::store::StoreOptions;
use crate::store::admission::{Admission, QUEUE_TIMEOUT};
use crate::wait::Hub;

/// The channel a trigger `NOTIFY`s on when a task changes state; the payload is
/// `"<status>:<task id>"`. (The name is also written in the migration.)
pub const CHANNEL: &str = "inloop_events";
/// The channel every audit row is announced on (`kind:task_id`), for live views.
pub const CHANGES: &str = "inloop_changes";

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tasks",
        include_str!("../../migrations/postgres/0001_tasks.sql"),
    ),
    (
        2,
        "api_keys",
        include_str!("../../migrations/postgres/0002_api_keys.sql"),
    ),
    (
        3,
        "users",
        include_str!("../../migrations/postgres/0003_users.sql"),
    ),
    (
        4,
        "verification",
        include_str!("../../migrations/postgres/0004_verification.sql"),
    ),
    (
        5,
        "outbox",
        include_str!("../../migrations/postgres/0005_outbox.sql"),
    ),
    (
        6,
        "callbacks",
        include_str!("../../migrations/postgres/0006_callbacks.sql"),
    ),
    (
        7,
        "policies",
        include_str!("../../migrations/postgres/0007_policies.sql"),
    ),
    (
        8,
        "effects",
        include_str!("../../migrations/postgres/0008_effects.sql"),
    ),
    (
        9,
        "cluster_state",
        include_str!("../../migrations/postgres/0009_cluster_state.sql"),
    ),
    (
        10,
        "traceparent",
        include_str!("../../migrations/postgres/0010_traceparent.sql"),
    ),
];

/// The PostgreSQL store.
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Write transactions use the same pool (row locks, not a single writer, order them).
    pub(crate) writer: PgPool,
    /// The queue every call waits in for its turn at the pool (`Store`'s dispatch enters it;
    /// the waker's LISTEN connection and sweep do not).
    pub(crate) admission: Admission,
}

impl PgStore {
    pub async fn connect(url: &str, opts: &StoreOptions) -> crate::error::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            crate::error::Error::Config(format!(
                "bad PostgreSQL URL {:?}: {e}",
                crate::store::redact_url(url)
            ))
        })?;
        let turns = opts.max_connections.max(1);
        let pool = PgPoolOptions::new()
            // The calls' turns, plus the waker's: its LISTEN connection holds one for good
            // and its safety sweep borrows one, outside the admission queue.
            .max_connections(turns + 2)
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| {
                crate::error::Error::Database(format!(
                    "cannot connect to PostgreSQL at {}: {e}",
                    crate::store::redact_url(url)
                ))
            })?;
        Ok(PgStore {
            writer: pool.clone(),
            pool,
            admission: Admission::new(turns, QUEUE_TIMEOUT),
        })
    }

    /// One `LISTEN` connection for the whole process, plus a slow safety sweep (every
    /// `safety`) over recently ended tasks in case a notification was lost with a connection.
    pub(crate) fn spawn_waker(
        &self,
        hub: Arc<Hub>,
        safety: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let sweeper = {
                let (pool, hub) = (pool.clone(), Arc::clone(&hub));
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(safety);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if pool.is_closed() {
                            return;
                        }
                        if !hub.is_empty() {
                            let since = crate::model::now_ms() - safety.as_millis() as i64 - 15_000;
                            sweep(&pool, &hub, since).await;
                        }
                    }
                })
            };
            loop {
                match listen(&pool, &hub).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "inloop: PostgreSQL listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            sweeper.abort();
        })
    }
}

async fn sweep(pool: &PgPool, hub: &Hub, since: i64) {
    use sqlx::Row as _;
    let rows =
        sqlx::query("SELECT id FROM inloop_tasks WHERE ended_at IS NOT NULL AND ended_at >= $1")
            .bind(since)
            .fetch_all(pool)
            .await;
    match rows {
        Ok(rows) => {
            for r in rows {
                if let Ok(id) = r.try_get::<String, _>("id")
                    && let Ok(id) = crate::store::parse_id(&id)
                {
                    hub.wake(&id);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "inloop: safety sweep failed"),
    }
}

/// Listens until the pool closes (`Ok`) or the listener fails (`Err`, the caller reconnects).
async fn listen(pool: &PgPool, hub: &Hub) -> crate::error::Result<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, CHANGES]).await?;
    // Anything that ended before LISTEN took effect (a waiter read the task just before).
    sweep(pool, hub, crate::model::now_ms() - 60_000).await;
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                let Some((what, id)) = n.payload().rsplit_once(':') else {
                    continue;
                };
                let Ok(task_id) = uuid::Uuid::parse_str(id) else {
                    continue;
                };
                if n.channel() == CHANGES {
                    hub.publish(crate::wait::Change {
                        task_id,
                        kind: what.to_string(),
                    });
                } else {
                    hub.wake(&task_id);
                }
            }
            // The connection dropped and was re-established: notifications in between are
            // lost, so sweep what ended recently.
            Ok(None) => sweep(pool, hub, crate::model::now_ms() - 60_000).await,
            Err(sqlx::Error::PoolClosed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

sql_store! {
    store = PgStore,
    db = Postgres,
    row = PgRow,
    begin_write = "BEGIN",
    lock_row = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    migrate_lock = "SELECT pg_advisory_xact_lock(7274101)",
    assignees = "jsonb_array_elements_text(inloop_tasks.assign_to) AS a(value)",
    assignees_len = "jsonb_array_length",
    handles_pre = "jsonb_array_elements_text(CAST(",
    handles_post = " AS JSONB)) AS h(value)",
    migrations = MIGRATIONS,
}
