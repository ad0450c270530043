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
    (
        9,
        "cluster_state",
        include_str!("../../migrations/sqlite/0009_cluster_state.sql"),
    ),
    (
        10,
        "traceparent",
        include_str!("../../migrations/sqlite/0010_traceparent.sql"),
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

/// How long a write may wait in this process's queue for the one writer connection.
pub const WRITER_QUEUE_TIMEOUT: Duration = super::admission::QUEUE_TIMEOUT;

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
        let open = |max: u32, queue: Duration| {
            let options = options.clone();
            async move {
                // Switching a new file to WAL takes an exclusive lock that SQLite's busy
                // timeout does not wait for: processes opening a fresh database at the same
                // moment can get SQLITE_BUSY here. Retry for as long as a connection may take.
                let started = std::time::Instant::now();
                loop {
                    let attempt = SqlitePoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(queue)
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
        // The one writer connection serialises this process's writes: a burst of N concurrent
        // writes waits N turns in its queue, which is load, not a failing database (another
        // process's lock is bounded by the busy timeout, per statement). So the queue gets
        // WRITER_QUEUE_TIMEOUT, not the connection timeout: 10,000 agents creating at once
        // must wait their turn, not fail with `pool timed out` (RELIABILITY.md, load case).
        let writer = open(1, opts.acquire_timeout.max(WRITER_QUEUE_TIMEOUT))
            .await
            .map_err(cannot)?;
        let pool = open(opts.max_connections.clamp(1, 16), opts.acquire_timeout)
            .await
            .map_err(cannot)?;
        Ok(SqliteStore {
            pool,
            writer,
            options,
        })
    }

    /// Watches for commits from any connection (this process's or another's) with
    /// `PRAGMA data_version` on one dedicated connection; reads only the audit rows added
    /// since, wakes the waiters of tasks that ended and publishes every row to the hub's
    /// change feed. It learns of commits by a push (inotify) where it can, else by a tick.
    pub(crate) fn spawn_waker(&self, hub: Arc<Hub>, how: Watch) -> tokio::task::JoinHandle<()> {
        let options = self.options.clone();
        tokio::spawn(async move {
            let mut how = how;
            loop {
                if let Err(e) = watch(&options, &hub, &mut how).await {
                    tracing::warn!(error = %e, "inloop: SQLite change watcher failed; restarting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }
}

/// How the SQLite watcher learns of commits made by other connections.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// The tick, when there is no push.
    pub poll: Duration,
    /// Try the push (inotify) first.
    pub push: bool,
    /// With the push: a check this often anyway.
    pub safety: Duration,
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

/// The watcher's position: the last `data_version` and audit row it has seen.
struct Seen {
    version: i64,
    last_id: i64,
}

/// One look: when `data_version` moved, publishes the audit rows added since (and wakes the
/// waiters of tasks they end). Returns whether anything was committed.
async fn look(
    conn: &mut SqliteConnection,
    hub: &Hub,
    seen: &mut Seen,
) -> crate::error::Result<bool> {
    use sqlx::Row as _;
    let v: i64 = sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut *conn)
        .await?;
    if v == seen.version {
        return Ok(false);
    }
    seen.version = v;
    loop {
        let rows = sqlx::query(
            "SELECT id, task_id, kind FROM inloop_audit WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .bind(seen.last_id)
        .fetch_all(&mut *conn)
        .await?;
        for r in &rows {
            seen.last_id = r.try_get("id")?;
            let kind: String = r.try_get("kind")?;
            let task_id = crate::store::parse_id(&r.try_get::<String, _>("task_id")?)?;
            if crate::rules::ends_task(&kind) {
                hub.wake(&task_id);
            }
            hub.publish(crate::wait::Change { task_id, kind });
        }
        if rows.len() < 1000 {
            return Ok(true);
        }
    }
}

/// Looks after a push: `SETTLE_STEPS` looks at the wal-index header, the first ones at once
/// (yielding), then 1, 2, 4 ... 64 ms apart; a commit seen, or another event, starts over.
const SETTLE_STEPS: u32 = 10;

async fn watch(
    options: &SqliteConnectOptions,
    hub: &Hub,
    how: &mut Watch,
) -> crate::error::Result<()> {
    let mut conn = SqliteConnection::connect_with(options).await?;
    let mut seen = Seen {
        last_id: sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM inloop_audit")
            .fetch_one(&mut conn)
            .await?,
        version: sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut conn)
            .await?,
    };
    // Rows ended while this watcher was not running: the waiters' own first read covers
    // everything before they subscribed, and this sweep covers a restart of the watcher.
    for id in ended_since(&mut conn, crate::model::now_ms() - 60_000).await? {
        hub.wake(&id);
    }
    let mut shm = ShmHeader::new(options.get_filename());
    let mut push = match how.push {
        true => match push::Push::new(options.get_filename()) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::info!(
                    error = %e,
                    every_ms = how.poll.as_millis() as u64,
                    "inloop: no inotify for the SQLite database; checking for commits on a tick"
                );
                how.push = false;
                None
            }
        },
        false => None,
    };
    if let Some(p) = &mut push {
        // The push. Every commit writes its frames to the `-wal` file (an inotify event); the
        // wal-index header in `-shm` (memory-mapped: no event) changes just after. So an event
        // starts a short run of header looks; while nothing happens the watcher sleeps.
        loop {
            let event = tokio::select! {
                r = p.next() => Some(r),
                _ = tokio::time::sleep(how.safety) => None,
            };
            match event {
                None => {
                    look(&mut conn, hub, &mut seen).await?;
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "inloop: inotify failed; checking SQLite for commits on a tick");
                    how.push = false;
                    break;
                }
                Some(Ok(())) => {}
            }
            let mut step = 0;
            while step < SETTLE_STEPS {
                if shm.changed() && look(&mut conn, hub, &mut seen).await? {
                    step = 0;
                } else {
                    step += 1;
                }
                if step < 3 {
                    tokio::task::yield_now().await;
                    continue;
                }
                let pause = Duration::from_millis(1 << (step - 3));
                tokio::select! {
                    r = p.next() => {
                        if r.is_ok() {
                            step = 0;
                        }
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    let mut tick = tokio::time::interval(how.poll);
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
        look(&mut conn, hub, &mut seen).await?;
    }
}

#[cfg(target_os = "linux")]
mod push {
    use std::ffi::OsString;
    use std::path::Path;

    use futures_util::StreamExt as _;
    use inotify::{EventMask, EventStream, Inotify, WatchMask};

    /// inotify on the database's directory, filtered to its `-wal` file (a directory watch
    /// also sees the file created again after the last connection removed it).
    pub(super) struct Push {
        events: EventStream<Vec<u8>>,
        wal: OsString,
    }

    impl Push {
        pub(super) fn new(db: &Path) -> std::io::Result<Push> {
            let dir = match db.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let Some(name) = db.file_name() else {
                return Err(std::io::Error::other(format!(
                    "{} names no file",
                    db.display()
                )));
            };
            let mut wal = name.to_owned();
            wal.push("-wal");
            let inotify = Inotify::init()?;
            inotify.watches().add(
                dir,
                WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO,
            )?;
            Ok(Push {
                events: inotify.into_event_stream(vec![0u8; 4096])?,
                wal,
            })
        }

        /// The next write to the `-wal` file (or an overflowed queue: events were lost).
        pub(super) async fn next(&mut self) -> std::io::Result<()> {
            loop {
                match self.events.next().await {
                    Some(Ok(e)) => {
                        if e.mask.contains(EventMask::Q_OVERFLOW)
                            || e.name.as_deref() == Some(self.wal.as_os_str())
                        {
                            return Ok(());
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err(std::io::Error::other("the inotify stream ended")),
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod push {
    /// No inotify off Linux: the watcher ticks.
    pub(super) struct Push;

    impl Push {
        pub(super) fn new(_db: &std::path::Path) -> std::io::Result<Push> {
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "inotify is Linux only",
            ))
        }

        pub(super) async fn next(&mut self) -> std::io::Result<()> {
            std::future::pending().await
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
