//! Waking waiters without polling the database per waiter.
//!
//! A process has one [`Hub`]. A waiter subscribes to its task id, then reads the task; when
//! the task changes, whoever learns of it first calls [`Hub::wake`]: the engine itself right
//! after an in-process commit, or the backend's single watcher for changes made elsewhere
//! (PostgreSQL `LISTEN`/`NOTIFY`; SQLite's `PRAGMA data_version` on one connection and a shared
//! timer). A parked waiter costs a map entry and a `Notify`, never a connection or a query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// Fan-out from task ids to the waiters parked on them, and a feed of every change (for
/// live views such as the dashboard).
pub struct Hub {
    slots: Mutex<HashMap<Uuid, Slot>>,
    changes: tokio::sync::broadcast::Sender<Change>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            slots: Mutex::default(),
            // A slow subscriber that falls this far behind gets `Lagged` and refreshes.
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

/// Something happened to a task: an audit row of this kind was committed (by any process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub task_id: Uuid,
    pub kind: String,
}

struct Slot {
    shared: Arc<Shared>,
    waiters: usize,
}

/// What a slot's waiters share: the notifier, and a counter of wakes so that a wake that
/// lands while no `Notified` future is enabled (between a read and the park) is still seen.
#[derive(Default)]
struct Shared {
    notify: Notify,
    wakes: AtomicU64,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Registers interest in `id` until the returned guard is dropped.
    pub fn subscribe(self: &Arc<Self>, id: Uuid) -> Subscription {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(id).or_insert_with(|| Slot {
            shared: Arc::default(),
            waiters: 0,
        });
        slot.waiters += 1;
        Subscription {
            hub: Arc::clone(self),
            id,
            shared: Arc::clone(&slot.shared),
        }
    }

    /// Wakes every waiter of `id` (no-op when none waits).
    pub fn wake(&self, id: &Uuid) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(id) {
            slot.shared.wakes.fetch_add(1, Ordering::SeqCst);
            slot.shared.notify.notify_waiters();
        }
    }

    /// Announces a committed change to the feed's subscribers (the backend's watcher calls
    /// this for every audit row, from this process or another).
    pub fn publish(&self, change: Change) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Every change from now on. Dropping the receiver unsubscribes.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// How many distinct task ids have waiters.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Interest in one task id; dropping it unregisters.
///
/// The protocol that loses no wake: take [`Subscription::wakes`] *before* reading the task;
/// if the task must be waited for, create and `enable()` a `notify().notified()` future, then
/// re-read the task if `wakes()` moved since, else await the future.
pub struct Subscription {
    hub: Arc<Hub>,
    id: Uuid,
    shared: Arc<Shared>,
}

impl Subscription {
    /// The notifier to await.
    pub fn notify(&self) -> &Notify {
        &self.shared.notify
    }

    /// How many wakes this task id has had since its first subscriber.
    pub fn wakes(&self) -> u64 {
        self.shared.wakes.load(Ordering::SeqCst)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut slots = self.hub.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&self.id) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wake_reaches_enabled_waiters_and_guards_clean_up() {
        let hub = Hub::new();
        let id = Uuid::now_v7();
        let a = hub.subscribe(id);
        let b = hub.subscribe(id);
        assert_eq!(hub.len(), 1);
        let before = a.wakes();
        {
            let na = a.notify().notified();
            let nb = b.notify().notified();
            tokio::pin!(na, nb);
            na.as_mut().enable();
            nb.as_mut().enable();
            hub.wake(&id);
            na.await;
            nb.await;
        }
        assert_eq!(b.wakes(), before + 1);
        drop(a);
        assert_eq!(hub.len(), 1);
        drop(b);
        assert!(hub.is_empty());
    }
}
