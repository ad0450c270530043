//! Waiting for a task to end: parking on the hub, deadlines, and `ask` (create, then wait).

use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::Engine;
use crate::error::Result;
use crate::model::{NewTask, Task};
use crate::rules;
use crate::telemetry::{self, TaskSpan};
use crate::wait::Subscription;

impl Engine {
    /// Waits until the task ends, or until `limit` passes (then returns it still pending).
    /// Enforces the deadline itself: when it passes, the task is timed out (compare-and-set,
    /// audited) and returned. Dropping the future at any point changes nothing.
    pub async fn wait(&self, id: Uuid, limit: Option<Duration>) -> Result<Task> {
        self.start_background();
        let sub = self.inner.hub.subscribe(id);
        let seen = sub.wakes();
        let limit_at = limit.map(|d| Instant::now() + d);
        self.park(&sub, id, limit_at, seen, None).await
    }

    /// The waiting loop. `known` is the task as read after `seen` was taken from `sub`.
    async fn park(
        &self,
        sub: &Subscription,
        id: Uuid,
        limit_at: Option<Instant>,
        mut seen: u64,
        mut known: Option<Box<Task>>,
    ) -> Result<Task> {
        // Tasks and query futures are boxed so that a parked waiter's own state stays small.
        loop {
            let task: Box<Task> = match known.take() {
                Some(t) => t,
                None => {
                    let _permit = self.inner.reads.acquire().await;
                    seen = sub.wakes();
                    Box::new(Box::pin(self.get(id)).await?)
                }
            };
            if task.status.is_final() {
                return Ok(*task);
            }
            let now = self.now();
            if task.deadline.is_some_and(|d| d <= now) {
                let t = Box::pin(self.expire(id)).await?;
                if t.status.is_final() {
                    return Ok(t);
                }
                continue;
            }
            if limit_at.is_some_and(|l| l <= Instant::now()) {
                return Ok(*task);
            }
            let deadline_at = task
                .deadline
                .map(|d| Instant::now() + Duration::from_millis((d - now).max(0) as u64));
            let wake_at = match (deadline_at, limit_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // Keep nothing of the task across the park: a parked waiter stays small.
            drop(task);
            let notified = sub.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if sub.wakes() != seen {
                continue; // woken since the read: read again
            }
            let _parked = ParkedGuard::new(&self.inner.parked);
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Creates the task (or finds the one its key names) and waits for its outcome: what
    /// `await_human` does, in one call. A fresh task is subscribed to before it is inserted,
    /// so no read is needed before parking.
    pub async fn ask(&self, new: NewTask) -> Result<Task> {
        let span = TaskSpan::start(telemetry::RESUME);
        let ended = self.ask_traced(new).await?;
        span.end(&ended, Vec::new());
        rules::outcome(ended)
    }

    /// [`Engine::ask`] up to the ended task (not yet turned into an outcome).
    async fn ask_traced(&self, new: NewTask) -> Result<Task> {
        self.start_background();
        let task = self.prepare_new(new)?;
        let sub = self.inner.hub.subscribe(task.id);
        let seen = sub.wakes();
        let created = Box::pin(self.insert(task)).await?;
        if created.created {
            let id = created.task.id;
            let known = Some(Box::new(created.task));
            Box::pin(self.park(&sub, id, None, seen, known)).await
        } else {
            drop(sub);
            self.wait(created.task.id, None).await
        }
    }

    /// Waits for the task's outcome: the completed task, or [`Error::TimedOut`] /
    /// [`Error::Cancelled`]. Never returns a pending task. Traced as `inloop.resume` (the
    /// span covers the wait).
    pub async fn await_response(&self, id: Uuid) -> Result<Task> {
        let span = TaskSpan::start(telemetry::RESUME);
        let ended = self.wait(id, None).await?;
        span.end(&ended, Vec::new());
        rules::outcome(ended)
    }
}

/// Counts a waiter as parked while alive (dropped on wake, timeout or cancellation).
struct ParkedGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> ParkedGuard<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ParkedGuard(counter)
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
