//! Reading tasks: one by id or key, pages of a listing, counts, deliveries, the audit trail.

use uuid::Uuid;

use super::Engine;
use super::checks::{check_namespace, check_text};
use crate::access::Principal;
use crate::audit::{self, ChainCheck};
use crate::error::{Error, Result};
use crate::model::{AuditEvent, ListFilter, Page, Status, Task};
use crate::store::ListQuery;

impl Engine {
    /// The task with this id.
    pub async fn get(&self, id: Uuid) -> Result<Task> {
        self.inner
            .store
            .get(&id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// The task `key` names in `namespace`.
    pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Task> {
        check_namespace(namespace)?;
        check_text("key", key, crate::schema::MAX_KEY_BYTES)?;
        self.inner
            .store
            .get_by_key(namespace, key)
            .await?
            .ok_or_else(|| Error::NotFound(format!("with key {key:?} in namespace {namespace:?}")))
    }

    /// Tasks matching `filter`, newest first, one page at a time.
    pub async fn list(&self, filter: ListFilter) -> Result<Page> {
        self.list_as(filter, &Principal::Trusted).await
    }

    /// [`Engine::list`], restricted to what `who` may see (an API key: its namespace; a
    /// reviewer: tasks assigned to them, claimed or answered by them, and unassigned tasks
    /// unless the namespace keeps those for admins).
    pub async fn list_as(&self, filter: ListFilter, who: &Principal) -> Result<Page> {
        self.list_scoped(filter, who, false).await
    }

    /// [`Engine::list_as`]; with `failed_deliveries`, only tasks that have a failed delivery
    /// (the dashboard's filter).
    pub async fn list_scoped(
        &self,
        filter: ListFilter,
        who: &Principal,
        failed_deliveries: bool,
    ) -> Result<Page> {
        let limit = filter.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "limit must be 1..=1000, not {limit}"
            )));
        }
        let before_id = match filter.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(
                Uuid::parse_str(c)
                    .map_err(|_| Error::InvalidArgument(format!("bad cursor {c:?}")))?
                    .to_string(),
            ),
            None => None,
        };
        let mut q = self.scope(filter.namespace, filter.key_prefix, filter.assignee, who)?;
        q.status = filter.status;
        q.created_after = filter.created_after;
        q.created_before = filter.created_before;
        q.before_id = before_id;
        q.failed_deliveries = failed_deliveries;
        q.limit = i64::from(limit) + 1;
        let mut items = self.inner.store.list(&q).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| t.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// How many tasks `who` can see in each status (every status, in a fixed order),
    /// within `namespace`, key prefix and assignee when given.
    pub async fn counts_as(
        &self,
        namespace: Option<String>,
        key_prefix: Option<String>,
        assignee: Option<String>,
        who: &Principal,
    ) -> Result<Vec<(Status, u64)>> {
        let q = self.scope(namespace, key_prefix, assignee, who)?;
        Ok(fill_counts(&self.inner.store.count_by_status(&q).await?))
    }

    /// How many deliveries have failed (`delivery_failed`) on the tasks `who` can see, within
    /// the same scope as [`Engine::counts_as`].
    pub async fn failed_deliveries_as(
        &self,
        namespace: Option<String>,
        key_prefix: Option<String>,
        assignee: Option<String>,
        who: &Principal,
    ) -> Result<u64> {
        let q = self.scope(namespace, key_prefix, assignee, who)?;
        Ok(self.inner.store.count_failed_deliveries(&q).await?.max(0) as u64)
    }

    /// How many deliveries have failed on each of `tasks` (tasks with none are absent). The
    /// caller shows only tasks it was allowed to list: nothing is checked here.
    pub async fn failed_delivery_counts(
        &self,
        tasks: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, u64>> {
        Ok(self
            .inner
            .store
            .failed_delivery_counts(tasks)
            .await?
            .into_iter()
            .map(|(id, n)| (id, n.max(0) as u64))
            .collect())
    }

    /// The task's deliveries (every channel, its callback, each event), oldest first, if
    /// `who` may see the task; `NotFound` otherwise.
    pub async fn deliveries_as(
        &self,
        id: Uuid,
        who: &Principal,
    ) -> Result<Vec<crate::store::outbox::Delivery>> {
        self.get_as(id, who).await?;
        self.inner.store.deliveries(&id).await
    }

    /// The part of a listing query that says what `who` may see.
    fn scope(
        &self,
        namespace: Option<String>,
        key_prefix: Option<String>,
        assignee: Option<String>,
        who: &Principal,
    ) -> Result<ListQuery> {
        if let Some(ns) = &namespace {
            check_namespace(ns)?;
        }
        // Filters reach the database as text: refuse what it cannot hold (NUL) with a 400.
        if let Some(p) = key_prefix.as_deref().filter(|p| !p.is_empty()) {
            check_text("key_prefix", p, crate::schema::MAX_KEY_BYTES)?;
        }
        if let Some(a) = assignee.as_deref().filter(|a| !a.is_empty()) {
            check_text("assignee", a, crate::schema::MAX_ACTOR_BYTES)?;
        }
        let namespace = match who {
            Principal::ApiKey(k) => match namespace {
                Some(ns) if ns != k.namespace => {
                    return Err(Error::Forbidden(format!(
                        "this API key is for namespace {:?}, not {ns:?}",
                        k.namespace
                    )));
                }
                _ => Some(k.namespace.clone()),
            },
            _ => namespace,
        };
        let viewer = match who {
            Principal::User(u) if u.role != crate::users::Role::Admin => Some(u.clone()),
            _ => None,
        };
        Ok(ListQuery {
            namespace,
            key_prefix: key_prefix.filter(|p| !p.is_empty()),
            assignee: assignee.filter(|a| !a.is_empty()),
            viewer,
            ..Default::default()
        })
    }

    /// The task's audit trail, oldest first.
    pub async fn audit(&self, id: Uuid) -> Result<Vec<AuditEvent>> {
        let events = self.inner.store.audit(&id).await?;
        if events.is_empty() {
            self.get(id).await?; // NotFound for an unknown id
        }
        Ok(events)
    }

    /// Verifies the task's audit hash chain.
    pub async fn verify_audit(&self, id: Uuid) -> Result<ChainCheck> {
        Ok(audit::verify_chain(&self.audit(id).await?))
    }

    /// How many tasks (all namespaces) are in each status, every status listed (zero when
    /// none), in a fixed order; one query (for metrics).
    pub async fn status_counts(&self) -> Result<Vec<(Status, u64)>> {
        Ok(fill_counts(&self.inner.store.status_counts().await?))
    }
}

/// Every status, in the order [`Engine::status_counts`] reports them.
const STATUSES: [Status; 5] = [
    Status::Pending,
    Status::Completed,
    Status::TimedOut,
    Status::Cancelled,
    Status::VerificationExhausted,
];

/// Every status with its count (zero when absent from `rows`), in [`STATUSES`] order.
fn fill_counts(rows: &[(Status, i64)]) -> Vec<(Status, u64)> {
    STATUSES
        .iter()
        .map(|&s| {
            let n = rows.iter().find(|(r, _)| *r == s).map_or(0, |(_, n)| *n);
            (s, n.max(0) as u64)
        })
        .collect()
}
