//! Waking waiters without polling the database per waiter.
//!
//! A process has one [`Hub`]. A waiter subscribes to its task id, then reads the task; when
//! the task changes, whoever learns of it first calls [`Hub::wake`]: the engine itself right
//! after an in-process commit, or the backend's single watcher for changes made elsewhere
//! (PostgreSQL `LISTEN`/`NOTIFY`; SQLite's `PRAGMA data_version` on one connection and a shared
//! timer). A parked waiter costs a map entry and a `Notify`, never a connection or a query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// Fan-out from task ids to the waiters parked on them.
#[derive(Default)]
pub struct Hub {
    slots: Mutex<HashMap<Uuid, Slot>>,
}

struct Slot {
    notify: Arc<Notify>,
    waiters: usize,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Registers interest in `id` until the returned guard is dropped.
    pub fn subscribe(self: &Arc<Self>, id: Uuid) -> Subscription {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(id).or_insert_with(|| Slot {
            notify: Arc::new(Notify::new()),
            waiters: 0,
        });
        slot.waiters += 1;
        Subscription {
            hub: Arc::clone(self),
            id,
            notify: Arc::clone(&slot.notify),
        }
    }

    /// Wakes every waiter of `id` (no-op when none waits).
    pub fn wake(&self, id: &Uuid) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(id) {
            slot.notify.notify_waiters();
        }
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
pub struct Subscription {
    hub: Arc<Hub>,
    id: Uuid,
    notify: Arc<Notify>,
}

impl Subscription {
    /// The notifier to await. Create and `enable()` the `Notified` future *before* reading the
    /// task, so a wake between the read and the await is not lost.
    pub fn notify(&self) -> &Notify {
        &self.notify
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
        drop(a);
        assert_eq!(hub.len(), 1);
        drop(b);
        assert!(hub.is_empty());
    }
}
