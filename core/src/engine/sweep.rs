//! The background work: the backend's waker and the sweep that fires timers and deadlines.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Background, Engine};
use crate::error::Result;
use crate::rules;
use crate::store::Store;

impl Engine {
    /// Starts the waker and the deadline sweeper (idempotent). Waiting starts them on demand;
    /// a server calls this at startup so deadlines fire even when nobody waits.
    pub fn start_background(&self) {
        self.inner.background.get_or_init(|| {
            let mut tasks = Vec::new();
            let hub = Arc::clone(&self.inner.hub);
            tasks.push(match &self.inner.store {
                Store::Sqlite(s) => s.spawn_waker(
                    hub,
                    crate::store::sqlite::Watch {
                        poll: self.inner.opts.sqlite_poll,
                        push: self.inner.opts.sqlite_push,
                        safety: self.inner.opts.sqlite_safety_check,
                    },
                ),
                Store::Postgres(s) => s.spawn_waker(hub, self.inner.opts.pg_safety_sweep),
            });
            let weak = Arc::downgrade(&self.inner);
            let every = self.inner.opts.expiry_sweep;
            let created = Arc::clone(&self.inner.created);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    let engine = Engine {
                        inner,
                        callbacks: None,
                    };
                    let next = engine.sweep_once().await;
                    drop(engine);
                    // Sleep until the next timer or deadline (one query finds it), at most
                    // `every`: tasks created by other processes are seen within that. Tasks
                    // created here wake the sweep at once.
                    let wait = next.map_or(every, |ms| {
                        Duration::from_millis(ms.clamp(0, every.as_millis() as i64) as u64)
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = created.notified() => {}
                    }
                }
            }));
            Background {
                tasks: Mutex::new(tasks),
            }
        });
    }

    /// One pass of the background sweep: fires due timers, times out overdue tasks; returns
    /// how long until the next timer or deadline is due (`None`: nothing is scheduled).
    async fn sweep_once(&self) -> Option<i64> {
        if let Err(e) = self.fire_due_timers().await {
            tracing::warn!(error = %e, "inloop: timer sweep failed");
        }
        if let Err(e) = self.expire_due().await {
            tracing::warn!(error = %e, "inloop: deadline sweep failed");
        }
        match self.inner.store.next_due().await {
            Ok(next) => next.map(|at| at - self.now()),
            Err(e) => {
                tracing::warn!(error = %e, "inloop: cannot read the next due time");
                None
            }
        }
    }

    /// Fires every reminder and escalation step that is due (each once, even when several
    /// processes sweep the same database); returns how many this call fired. `inloop serve`
    /// runs this in the background; tests with a manual clock call it directly.
    pub async fn fire_due_timers(&self) -> Result<usize> {
        let mut fired = 0;
        loop {
            let now = self.now();
            let due = self.inner.store.timers_due(now, 500).await?;
            let n = due.len();
            for id in due {
                let now = self.now();
                let (after, k) = self
                    .inner
                    .store
                    .transition(&id, now, |t| rules::fire_timers(t, now))
                    .await?;
                if after.status.is_final() {
                    self.inner.hub.wake(&id);
                }
                fired += k;
            }
            if n < 500 {
                return Ok(fired);
            }
        }
    }

    /// Times out every overdue pending task; returns how many this call ended.
    pub async fn expire_due(&self) -> Result<usize> {
        let mut ended = 0;
        loop {
            let due = self.inner.store.due(self.now(), 500).await?;
            let n = due.len();
            for id in due {
                if self.expire_one(id).await?.1 {
                    ended += 1;
                }
            }
            if n < 500 {
                return Ok(ended);
            }
        }
    }
}
