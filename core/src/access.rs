//! Who may see, claim, answer and cancel a task: the rules, in one place, for every path
//! (dashboard, REST API, channels, SDKs). Pure functions of the task, the acting principal
//! and the namespace's policy; the engine applies them under the task's row lock.

use crate::apikeys::ApiKey;
use crate::error::{Error, Result};
use crate::model::Task;
use crate::users::Role;

/// Who is acting, as the core sees it.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A caller with direct database access (the SDKs in direct mode, the CLI): trusted as
    /// far as the database credentials are, like an admin.
    Trusted,
    /// A person signed in to the dashboard (or a channel identity resolved to a user).
    User(Identity),
    /// An agent (or integration) using an API key.
    ApiKey(ApiKey),
}

/// A person, as the access rules match them against a task's `assign_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Login name, lower case.
    pub name: String,
    /// Lower case.
    pub email: Option<String>,
    pub role: Role,
    /// Groups (lower case), such as `finance`: `assign_to` names them as `role:finance` or
    /// `group:finance`.
    pub groups: Vec<String>,
}

impl Identity {
    /// The `assign_to` entries that name this person: their name, e-mail, `role:ROLE`, and
    /// `role:GROUP` / `group:GROUP` for each group (lower case; entries are compared
    /// case-insensitively).
    pub fn handles(&self) -> Vec<String> {
        let mut h = vec![self.name.clone(), format!("role:{}", self.role)];
        if let Some(e) = &self.email {
            h.push(e.clone());
        }
        for g in &self.groups {
            h.push(format!("role:{g}"));
            h.push(format!("group:{g}"));
        }
        h
    }

    fn is_assigned(&self, task: &Task) -> bool {
        let handles = self.handles();
        task.assign_to
            .iter()
            .any(|a| handles.iter().any(|h| a.eq_ignore_ascii_case(h)))
    }
}

/// Who may see and answer a namespace's unassigned tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unassigned {
    /// Every reviewer (the default).
    #[default]
    Reviewers,
    /// Only admins.
    Admins,
}

impl Unassigned {
    pub fn as_str(self) -> &'static str {
        match self {
            Unassigned::Reviewers => "reviewers",
            Unassigned::Admins => "admins",
        }
    }
}

impl std::str::FromStr for Unassigned {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reviewers" => Ok(Unassigned::Reviewers),
            "admins" => Ok(Unassigned::Admins),
            other => Err(Error::InvalidArgument(format!(
                "unknown policy {other:?} for unassigned tasks (expected reviewers or admins)"
            ))),
        }
    }
}

/// Whether `who` may see the task at all. Others get `not_found`: a task's existence is not
/// revealed to someone who may not see it.
pub fn can_see(task: &Task, who: &Principal, policy: Unassigned) -> bool {
    match who {
        Principal::Trusted => true,
        Principal::ApiKey(k) => k.namespace == task.namespace,
        Principal::User(u) => {
            u.role == Role::Admin
                || u.is_assigned(task)
                || (task.assign_to.is_empty() && policy == Unassigned::Reviewers)
                || task.claimed_by.as_deref() == Some(&u.name)
                || task.answered_by.as_deref() == Some(&u.name)
        }
    }
}

fn not_found(task: &Task) -> Error {
    Error::NotFound(task.id.to_string())
}

fn claimed_by_other(task: &Task, me: Option<&str>) -> Option<Error> {
    let by = task.claimed_by.as_deref()?;
    (Some(by) != me).then(|| {
        Error::Forbidden(format!(
            "task {} is claimed by {by}; only they or an admin may answer it",
            task.id
        ))
    })
}

/// Whether `who` may answer the (pending) task: `not_found` when they may not see it,
/// `forbidden` when they see it but may not answer.
pub fn check_answer(task: &Task, who: &Principal, policy: Unassigned) -> Result<()> {
    if !can_see(task, who, policy) {
        return Err(not_found(task));
    }
    if task.status.is_final() {
        // The state machine reports the end ("answered by bob at ..."), the more useful news.
        return Ok(());
    }
    match who {
        Principal::Trusted => Ok(()),
        Principal::ApiKey(k) => {
            if !k.allow_answer {
                return Err(Error::Forbidden(format!(
                    "API key {} ({}) may not answer tasks: an agent must not approve its own \
                     requests (an admin can create a key with --allow-answer)",
                    k.id, k.name
                )));
            }
            claimed_by_other(task, None).map_or(Ok(()), Err)
        }
        Principal::User(u) if u.role == Role::Admin => Ok(()),
        Principal::User(u) => {
            if let Some(e) = claimed_by_other(task, Some(&u.name)) {
                return Err(e);
            }
            if u.is_assigned(task) || (task.assign_to.is_empty() && policy == Unassigned::Reviewers)
            {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "task {} is not assigned to {}",
                    task.id, u.name
                )))
            }
        }
    }
}

/// Whether `voter` may answer a task with approvers (after [`check_answer`]): they must be
/// named by the approvers list as it stands (escalations add to it), admins included, and not
/// be the requester when the policy excludes them. Tasks without approvers: always `Ok`.
pub fn check_voter(task: &Task, voter: &Identity) -> Result<()> {
    let Some(a) = task.policy.as_ref().and_then(|p| p.approvers.as_ref()) else {
        return Ok(());
    };
    if task.status.is_final() {
        return Ok(());
    }
    if a.exclude_requester && crate::policy::is_requester(task, voter) {
        return Err(Error::Forbidden(format!(
            "{} requested task {} and may not approve it (the policy excludes the requester)",
            voter.name, task.id
        )));
    }
    if !crate::policy::is_listed(&crate::policy::approvers_now(task), voter) {
        return Err(Error::Forbidden(format!(
            "{} is not one of the approvers of task {}",
            voter.name, task.id
        )));
    }
    Ok(())
}

/// The identity an answer given as `by` stands for when no one is signed in (direct access,
/// API keys): the user of that name or e-mail when there is one, else `by` itself (an e-mail
/// address when it looks like one).
pub fn identity_of(by: &str, user: Option<&crate::users::User>) -> Identity {
    match user {
        Some(u) => Identity {
            name: u.name.to_lowercase(),
            email: u.email.as_ref().map(|e| e.to_lowercase()),
            role: u.role,
            groups: u.groups.iter().map(|g| g.to_lowercase()).collect(),
        },
        None => Identity {
            name: by.to_lowercase(),
            email: by.contains('@').then(|| by.to_lowercase()),
            role: Role::Reviewer,
            groups: Vec::new(),
        },
    }
}

/// Whether `who` may claim the task (as `by`): those who may answer it, when nobody else
/// holds it. Tasks that need several approvals are not claimed: every approver votes.
pub fn check_claim(task: &Task, who: &Principal, by: &str, policy: Unassigned) -> Result<()> {
    check_answer(task, who, policy)?;
    if task.policy.as_ref().is_some_and(|p| p.required() > 1) && !task.status.is_final() {
        return Err(Error::Forbidden(format!(
            "task {} needs several approvals and cannot be claimed: every approver votes",
            task.id
        )));
    }
    match task.claimed_by.as_deref() {
        Some(other) if other != by && !task.status.is_final() => Err(Error::Forbidden(format!(
            "task {} is already claimed by {other}",
            task.id
        ))),
        _ => Ok(()),
    }
}

/// Whether `who` may release the task's claim: the claimer, an admin, or a trusted caller.
pub fn check_release(task: &Task, who: &Principal, by: &str, policy: Unassigned) -> Result<()> {
    if !can_see(task, who, policy) {
        return Err(not_found(task));
    }
    let admin = matches!(who, Principal::Trusted)
        || matches!(who, Principal::User(u) if u.role == Role::Admin);
    match task.claimed_by.as_deref() {
        Some(holder) if holder != by && !admin && !task.status.is_final() => {
            Err(Error::Forbidden(format!(
                "task {} is claimed by {holder}; only they or an admin may release it",
                task.id
            )))
        }
        _ => Ok(()),
    }
}

/// Whether `who` may cancel the task: admins, trusted callers, and API keys of its
/// namespace (an agent withdrawing its own request). Reviewers may not.
pub fn check_cancel(task: &Task, who: &Principal, policy: Unassigned) -> Result<()> {
    if !can_see(task, who, policy) {
        return Err(not_found(task));
    }
    match who {
        Principal::User(u) if u.role != Role::Admin && !task.status.is_final() => {
            Err(Error::Forbidden(format!(
                "only an admin may cancel a task ({} is a {})",
                u.name, u.role
            )))
        }
        _ => Ok(()),
    }
}

/// What `who` may do on the task now: the checks above, for pages that offer only what will
/// work (the actions check again under the row lock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    pub answer: bool,
    pub claim: bool,
    pub release: bool,
    pub cancel: bool,
}

/// The [`Permissions`] of `who` on `task` under `policy`. `who` claims and releases as
/// themselves (a user's name).
pub fn permissions(task: &Task, who: &Principal, policy: Unassigned) -> Permissions {
    if task.status.is_final() {
        return Permissions::default();
    }
    let me = match who {
        Principal::User(u) => u.name.as_str(),
        _ => "",
    };
    let voter_ok = match who {
        Principal::User(u) => {
            check_voter(task, u).is_ok() && !task.votes.iter().any(|v| v.by == u.name)
        }
        _ => true,
    };
    Permissions {
        answer: voter_ok && check_answer(task, who, policy).is_ok(),
        claim: task.claimed_by.is_none() && check_claim(task, who, me, policy).is_ok(),
        release: task.claimed_by.is_some() && check_release(task, who, me, policy).is_ok(),
        cancel: check_cancel(task, who, policy).is_ok(),
    }
}
