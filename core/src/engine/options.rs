//! The engine's tuning knobs.

use std::time::Duration;

use crate::store::StoreOptions;

/// Tuning knobs; the defaults suit both an agent process and a server.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub store: StoreOptions,
    /// How often SQLite's change watcher checks the WAL index for commits by other
    /// connections when it cannot be pushed (no inotify, or `sqlite_push` off).
    pub sqlite_poll: Duration,
    /// Learn of SQLite commits from other processes by a push (inotify on the database's
    /// directory: every commit writes the `-wal` file) instead of the `sqlite_poll` tick.
    /// Falls back to the tick where inotify is missing or fails. Linux only.
    pub sqlite_push: bool,
    /// With the push working: how often the watcher checks anyway, in case an event was
    /// lost (an overflowed inotify queue is already treated as a change).
    pub sqlite_safety_check: Duration,
    /// How often the PostgreSQL waker re-checks recently ended tasks, in case a `NOTIFY` was
    /// lost with a dropped connection.
    pub pg_safety_sweep: Duration,
    /// How often the deadline sweeper times out overdue tasks that nobody waits on here.
    pub expiry_sweep: Duration,
    /// Run migrations on open.
    pub migrate: bool,
    /// Where the LLM verifier reaches each provider, and with which API key (from the
    /// environment by default: docs/verification.md).
    pub verifiers: crate::verify::llm::ProviderConfig,
    /// The time the engine's rules use (creation, deadlines, timers, votes): the system clock,
    /// or a manual one in tests.
    pub clock: crate::clock::Clock,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            store: StoreOptions::default(),
            sqlite_poll: Duration::from_millis(10),
            sqlite_push: true,
            sqlite_safety_check: Duration::from_secs(10),
            pg_safety_sweep: Duration::from_secs(10),
            expiry_sweep: Duration::from_secs(1),
            migrate: true,
            verifiers: crate::verify::llm::ProviderConfig::from_env(),
            clock: crate::clock::Clock::System,
        }
    }
}
