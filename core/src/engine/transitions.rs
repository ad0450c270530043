//! The other changes of a task's state: cancel, claim, release, expire.

use uuid::Uuid;

use super::Engine;
use super::checks::{check_actor, check_channel};
use crate::access::{self, Principal};
use crate::error::{Error, Result};
use crate::model::Task;
use crate::rules;
use crate::schema;
use crate::store::Decision;

impl Engine {
    /// Cancels a pending task with direct database access; `Conflict` if it already ended.
    pub async fn cancel(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        reason: Option<&str>,
    ) -> Result<Task> {
        self.cancel_as(id, by, channel, reason, &Principal::Trusted)
            .await
    }

    /// Cancels a pending task on behalf of `who` (admins, trusted callers and API keys of the
    /// task's namespace; see [`access::check_cancel`]).
    pub async fn cancel_as(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        reason: Option<&str>,
        who: &Principal,
    ) -> Result<Task> {
        let by = match who {
            Principal::User(u) => u.name.as_str(),
            _ => by,
        };
        check_actor(by)?;
        check_channel(channel)?;
        if let Some(r) = reason
            && r.len() > schema::MAX_TITLE_BYTES
        {
            return Err(Error::InvalidArgument(format!(
                "reason is {} bytes, over the limit of {}",
                r.len(),
                schema::MAX_TITLE_BYTES
            )));
        }
        let policy = self.policy(&id, who).await?;
        let now = self.now();
        let (after, result) = self
            .inner
            .store
            .transition(&id, now, |t| {
                if let Err(e) = access::check_cancel(t, who, policy) {
                    return (Decision::default(), Err(e));
                }
                rules::cancel(t, by, channel, reason, now)
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        result.map(|()| after)
    }

    /// Claims a pending task for `by` (a signed-in user always claims for themselves): while
    /// claimed, only they or an admin may answer. Claiming one's own claim again changes
    /// nothing; a task claimed by someone else is `forbidden`.
    pub async fn claim(&self, id: Uuid, by: &str, channel: &str, who: &Principal) -> Result<Task> {
        self.claim_or_release(id, by, channel, who, true).await
    }

    /// Releases the task's claim (the claimer, or an admin). Releasing an unclaimed task
    /// changes nothing.
    pub async fn release(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        who: &Principal,
    ) -> Result<Task> {
        self.claim_or_release(id, by, channel, who, false).await
    }

    async fn claim_or_release(
        &self,
        id: Uuid,
        by: &str,
        channel: &str,
        who: &Principal,
        claim: bool,
    ) -> Result<Task> {
        let by = match who {
            Principal::User(u) => u.name.as_str(),
            _ => by,
        };
        check_actor(by)?;
        check_channel(channel)?;
        let policy = self.policy(&id, who).await?;
        let now = self.now();
        let (after, result) = self
            .inner
            .store
            .transition(&id, now, |t| {
                let allowed = if claim {
                    access::check_claim(t, who, by, policy)
                } else {
                    access::check_release(t, who, by, policy)
                };
                if let Err(e) = allowed {
                    return (Decision::default(), Err(e));
                }
                if claim {
                    rules::claim(t, by, channel, now)
                } else {
                    rules::release(t, by, channel, now)
                }
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        result.map(|()| after)
    }

    /// Times the task out if it is pending and past its deadline; returns it as it is now.
    pub async fn expire(&self, id: Uuid) -> Result<Task> {
        Ok(self.expire_one(id).await?.0)
    }

    /// [`Engine::expire`], also telling whether this call (not a concurrent one) ended it.
    pub(super) async fn expire_one(&self, id: Uuid) -> Result<(Task, bool)> {
        let now = self.now();
        let (after, ended_here) = self
            .inner
            .store
            .transition(&id, now, |t| {
                let (decision, ()) = rules::expire(t, now);
                let ends = decision.update.is_some();
                (decision, ends)
            })
            .await?;
        if after.status.is_final() {
            self.inner.hub.wake(&id);
        }
        Ok((after, ended_here))
    }
}
