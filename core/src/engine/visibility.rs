//! Who may see a task and what they may do on it, and the namespaces' unassigned-task policies.

use uuid::Uuid;

use super::Engine;
use super::checks::check_namespace;
use crate::access::{self, Principal, Unassigned};
use crate::error::{Error, Result};
use crate::model::Task;

impl Engine {
    /// The task, if `who` may see it; `NotFound` otherwise (its existence is not revealed).
    pub async fn get_as(&self, id: Uuid, who: &Principal) -> Result<Task> {
        let task = self.get(id).await?;
        let policy = self.policy(&id, who).await?;
        if access::can_see(&task, who, policy) {
            Ok(task)
        } else {
            Err(Error::NotFound(id.to_string()))
        }
    }

    /// What `who` may do on `task` now (answer, claim, release, cancel), by the same rules the
    /// actions themselves apply (for pages that offer only what will work).
    pub async fn permissions(&self, task: &Task, who: &Principal) -> Result<access::Permissions> {
        let policy = self.policy(&task.id, who).await?;
        Ok(access::permissions(task, who, policy))
    }

    /// The unassigned-task policy that applies to `who` acting on task `id` (read only for
    /// reviewers: nobody else depends on it).
    pub(super) async fn policy(&self, id: &Uuid, who: &Principal) -> Result<Unassigned> {
        match who {
            Principal::User(u) if u.role != crate::users::Role::Admin => {
                match self.inner.store.policy_for_task(id).await? {
                    Some(p) => p.parse(),
                    None => Ok(Unassigned::default()),
                }
            }
            _ => Ok(Unassigned::default()),
        }
    }

    /// Sets who may see and answer the unassigned tasks of `namespace`.
    pub async fn set_unassigned_policy(&self, namespace: &str, policy: Unassigned) -> Result<()> {
        check_namespace(namespace)?;
        self.inner
            .store
            .set_namespace_policy(namespace, policy.as_str(), self.now())
            .await
    }

    /// Every namespace with a policy set, and its policy (others use the default).
    pub async fn unassigned_policies(&self) -> Result<Vec<(String, Unassigned)>> {
        self.inner
            .store
            .namespace_policies()
            .await?
            .into_iter()
            .map(|(ns, p)| Ok((ns, p.parse()?)))
            .collect()
    }
}
