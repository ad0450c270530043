//! SQLite backend: one file, WAL, `BEGIN IMMEDIATE` writers, a busy timeout.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite};

use crate::store::StoreOptions;
use crate::wait::Hub;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tasks",
        include_str!("../../migrations/sqlite/0001_tasks.sql"),
    ),
    (
        2,
        "api_keys",
        include_str!("../../migrations/sqlite/0002_api_keys.sql"),
    ),
    (
        3,
        "users",
        include_str!("../../migrations/sqlite/0003_users.sql"),
    ),
    (
        4,
        "verification",
        include_str!("../../migrations/sqlite/0004_verification.sql"),
    ),
    (
        5,
        "outbox",
        include_str!("../../migrations/sqlite/0005_outbox.sql"),
    ),
    (
        6,
        "callbacks",
        include_str!("../../migrations/sqlite/0006_callbacks.sql"),
    ),
    (
        7,
        "policies",
        include_str!("../../migrations/sqlite/0007_policies.sql"),
    ),
    (
        8,
        "effects",
        include_str!("../../migrations/sqlite/0008_effects.sql"),
    ),
];

/// The SQLite store.
pub struct SqliteStore {
    /// Readers (WAL lets them run beside the writer).
    pub(crate) pool: SqlitePool,
    /// One connection for write transactions: writers in this process queue here (FIFO,
    /// async) instead of spinning in SQLite's busy handler, which sleeps up to 100 ms a try.
    /// The busy timeout still covers writers in other processes.
    pub(crate) writer: SqlitePool,
    options: SqliteConnectOptions,
}

impl SqliteStore {
    pub async fn connect(url: &str, opts: &StoreOptions) -> crate::error::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| crate::error::Error::Config(format!("bad SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a crashed or killed process loses nothing that committed;
            // only a power loss can drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(opts.acquire_timeout)
            .foreign_keys(true);
        let filename = options.get_filename().to_path_buf();
        if let Some(parent) = filename.parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                crate::error::Error::Config(format!(
                    "cannot create the directory {} for the SQLite database: {e}",
                    parent.display()
                ))
            })?;
        }
        let open = |max: u32| {
            let options = options.clone();
            async move {
                // Switching a new file to WAL takes an exclusive lock that SQLite's busy
                // timeout does not wait for: processes opening a fresh database at the same
                // moment can get SQLITE_BUSY here. Retry for as long as a connection may take.
                let started = std::time::Instant::now();
                loop {
                    let attempt = SqlitePoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(opts.acquire_timeout)
                        .connect_with(options.clone())
                        .await;
                    match attempt {
                        Err(e) if is_busy(&e) && started.elapsed() < opts.acquire_timeout => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        other => return other,
                    }
                }
            }
        };
        let cannot = |e: sqlx::Error| {
            crate::error::Error::Database(format!(
                "cannot open the SQLite database {}: {e}",
                filename.display()
            ))
        };
        let writer = open(1).await.map_err(cannot)?;
        let pool = open(opts.max_connections.clamp(1, 16))
            .await
            .map_err(cannot)?;
        Ok(SqliteStore {
            pool,
            writer,
            options,
        })
    }

    /// Watches for commits from any connection (this process's or another's) with
    /// `PRAGMA data_version` on one dedicated connection, every `poll`; reads only the audit
    /// rows added since, wakes the waiters of tasks that ended and publishes every row to the
    /// hub's change feed.
    pub(crate) fn spawn_waker(&self, hub: Arc<Hub>, poll: Duration) -> tokio::task::JoinHandle<()> {
        let options = self.options.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = watch(&options, &hub, poll).await {
                    tracing::warn!(error = %e, "inloop: SQLite change watcher failed; restarting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }
}

/// SQLITE_BUSY (or one of its extended codes): the database is locked.
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| c & 0xff == 5),
        _ => false,
    }
}

async fn watch(
    options: &SqliteConnectOptions,
    hub: &Hub,
    poll: Duration,
) -> crate::error::Result<()> {
    use sqlx::Row as _;
    let mut conn = SqliteConnection::connect_with(options).await?;
    let mut last_id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM inloop_audit")
        .fetch_one(&mut conn)
        .await?;
    let mut version: i64 = sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut conn)
        .await?;
    // Rows ended while this watcher was not running: the waiters' own first read covers
    // everything before they subscribed, and this sweep covers a restart of the watcher.
    for id in ended_since(&mut conn, crate::model::now_ms() - 60_000).await? {
        hub.wake(&id);
    }
    let mut shm = ShmHeader::new(options.get_filename());
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        // Cheap pre-check: every WAL commit rewrites the wal-index header at the start of the
        // -shm file. Unchanged header, no commit: skip the query. A full check still runs every
        // 64 ticks in case the header cannot be read.
        if !shm.changed() && !ticks.is_multiple_of(64) {
            continue;
        }
        let v: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut conn)
            .await?;
        if v == version {
            continue;
        }
        version = v;
        loop {
            let rows = sqlx::query(
                "SELECT id, task_id, kind FROM inloop_audit WHERE id > $1 ORDER BY id LIMIT 1000",
            )
            .bind(last_id)
            .fetch_all(&mut conn)
            .await?;
            for r in &rows {
                last_id = r.try_get("id")?;
                let kind: String = r.try_get("kind")?;
                let task_id = crate::store::parse_id(&r.try_get::<String, _>("task_id")?)?;
                if crate::rules::ends_task(&kind) {
                    hub.wake(&task_id);
                }
                hub.publish(crate::wait::Change { task_id, kind });
            }
            if rows.len() < 1000 {
                break;
            }
        }
    }
}

/// The wal-index header (the first 136 bytes of `<db>-shm`, see sqlite.org/walformat.html).
/// Any commit changes it; reading it is one `pread`, no query.
struct ShmHeader {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    last: [u8; 136],
}

impl ShmHeader {
    fn new(db: &std::path::Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push("-shm");
        ShmHeader {
            path: path.into(),
            file: None,
            last: [0; 136],
        }
    }

    #[cfg(not(unix))]
    fn changed(&mut self) -> bool {
        true
    }

    /// Whether the header differs from the last look (`true` when it cannot be read).
    #[cfg(unix)]
    fn changed(&mut self) -> bool {
        use std::os::unix::fs::FileExt;
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        let Some(file) = &self.file else { return true };
        let mut now = [0u8; 136];
        match file.read_exact_at(&mut now, 0) {
            Ok(()) if now == self.last => false,
            Ok(()) => {
                self.last = now;
                true
            }
            Err(_) => {
                self.file = None;
                true
            }
        }
    }
}

async fn ended_since(
    conn: &mut SqliteConnection,
    since: i64,
) -> crate::error::Result<Vec<uuid::Uuid>> {
    use sqlx::Row as _;
    let rows =
        sqlx::query("SELECT id FROM inloop_tasks WHERE ended_at IS NOT NULL AND ended_at >= $1")
            .bind(since)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| crate::store::parse_id(&r.try_get::<String, _>("id")?))
        .collect()
}

sql_store! {
    store = SqliteStore,
    db = Sqlite,
    row = SqliteRow,
    begin_write = "BEGIN IMMEDIATE",
    lock_row = "",
    skip_locked = "",
    migrate_lock = "",
    assignees = "json_each(inloop_tasks.assign_to) AS a",
    assignees_len = "json_array_length",
    handles_pre = "json_each(CAST(",
    handles_post = " AS TEXT)) AS h",
    migrations = MIGRATIONS,
}
