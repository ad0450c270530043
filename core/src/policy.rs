//! Approval policies (docs/policies.md): who must answer and how many, reminders and
//! escalation, and what a timeout means. The types the agent passes and the task stores, their
//! checks, and the pure helpers the state machine (`rules.rs`) and the access rules use.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::Identity;
use crate::error::{Error, Result};
use crate::model::Task;

/// A task's approval policy. Every part is optional; an empty policy changes nothing.
///
/// ```
/// use inloop_core::policy::{Approvers, Escalation, OnTimeout, Policy, RejectOn};
/// let p = Policy {
///     approvers: Some(Approvers {
///         any_of: vec!["alice@acme.com".into(), "bob@acme.com".into(), "role:finance".into()],
///         required: 2,
///         exclude_requester: true,
///         reject_on: RejectOn::Any,
///     }),
///     reminders_ms: vec![30 * 60_000, 2 * 3600_000],
///     escalate: vec![Escalation {
///         after_ms: 4 * 3600_000,
///         notify: vec!["slack:@cfo".into()],
///         add_approvers: vec!["carol@acme.com".into()],
///     }],
///     on_timeout: OnTimeout::Raise,
/// };
/// assert!(p.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Who may answer, and how many distinct approvals complete the task.
    pub approvers: Option<Approvers>,
    /// Re-notify the task's `notify` targets this long after creation (ms), once each.
    pub reminders_ms: Vec<u64>,
    /// Notify new targets (and optionally add approvers) this long after creation.
    pub escalate: Vec<Escalation>,
    /// What the deadline means: `"raise"` (the agent gets `TimedOut`, the default) or
    /// `{"default": ANSWER}` (the agent gets ANSWER, marked and audited as a default).
    pub on_timeout: OnTimeout,
}

/// Who may answer a task, and how many must.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approvers {
    /// User names, e-mail addresses, `role:NAME` / `group:NAME`. Only these people may answer
    /// (admins included: an admin outside the list may cancel, not vote).
    pub any_of: Vec<String>,
    /// Distinct approvals that complete the task (1 when absent). Above 1, the response
    /// schema must be an approval (one required boolean, optional text fields).
    #[serde(default = "one")]
    pub required: u32,
    /// The requester (`requested_by`) may not answer even when the list names them.
    #[serde(default)]
    pub exclude_requester: bool,
    /// When rejections end the task: `any` (the first, the default) or `majority` (more than
    /// half of `required`).
    #[serde(default)]
    pub reject_on: RejectOn,
}

fn one() -> u32 {
    1
}

/// When rejections end a quorum task as rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectOn {
    /// The first rejection ends the task as rejected.
    #[default]
    Any,
    /// Rejections end it once they are more than half of `required`.
    Majority,
}

/// A later step: new targets are notified, and approvers may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Time after creation, in ms.
    pub after_ms: u64,
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub add_approvers: Vec<String>,
}

/// What the deadline does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The task times out and the agent gets `TimedOut` (never a made-up answer).
    #[default]
    Raise,
    /// The task times out with this answer; the agent gets it marked as a default
    /// (`defaulted`), and the audit trail records it as such.
    Default(Value),
}

/// One person's vote on a quorum task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Vote {
    pub by: String,
    /// The voter's e-mail address, when known (lists may name people by address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Through which channel the vote came (`dashboard`, `slack`, `email`, `api` ...).
    pub channel: String,
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// Whether the vote approves (the approval's boolean).
    pub approve: bool,
    /// The answer as given.
    #[schema(value_type = Value)]
    pub response: Value,
}

/// A durable timer of a task: a reminder or an escalation step. Fired once, in the
/// transaction that records it (`fired_at`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timer {
    /// `reminder` or `escalation`.
    pub kind: String,
    /// 1, 2 ... within its kind, in the order the policy lists them.
    pub index: u32,
    #[serde(with = "crate::model::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: i64,
    #[serde(default, with = "crate::model::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub fired_at: Option<i64>,
}

/// Timer kinds.
pub const REMINDER: &str = "reminder";
/// See [`REMINDER`].
pub const ESCALATION: &str = "escalation";

/// Longest delay a reminder or an escalation may have (ten years, like a timeout).
const MAX_DELAY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

impl Policy {
    /// Checks the policy on its own (the engine checks it against the task's schema too).
    pub fn check(&self) -> Result<()> {
        if let Some(a) = &self.approvers {
            if a.any_of.is_empty() {
                return Err(bad("approvers.any_of must name at least one approver"));
            }
            check_entries("approvers.any_of", &a.any_of)?;
            if a.required == 0 {
                return Err(bad("approvers.required must be at least 1"));
            }
            if a.required > 100 {
                return Err(bad("approvers.required must be at most 100"));
            }
        }
        if self.reminders_ms.len() > 20 {
            return Err(bad("at most 20 reminders"));
        }
        if self.escalate.len() > 10 {
            return Err(bad("at most 10 escalation steps"));
        }
        for (i, ms) in self.reminders_ms.iter().enumerate() {
            check_delay(&format!("reminders[{i}]"), *ms)?;
        }
        for (i, e) in self.escalate.iter().enumerate() {
            check_delay(&format!("escalate[{i}].after"), e.after_ms)?;
            if e.notify.is_empty() && e.add_approvers.is_empty() {
                return Err(bad(&format!(
                    "escalate[{i}] must notify someone or add approvers"
                )));
            }
            check_entries(&format!("escalate[{i}].add_approvers"), &e.add_approvers)?;
            if !e.add_approvers.is_empty() && self.approvers.is_none() {
                return Err(bad(&format!(
                    "escalate[{i}].add_approvers needs approvers on the task"
                )));
            }
        }
        Ok(())
    }

    /// Whether the policy changes nothing (then it is not stored).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// The required number of distinct approvals (1 without approvers).
    pub fn required(&self) -> u32 {
        self.approvers.as_ref().map_or(1, |a| a.required)
    }

    /// The task's timers, due relative to `created_at`, in the order they fire.
    pub fn timers(&self, created_at: i64) -> Vec<Timer> {
        let mut out: Vec<Timer> = Vec::new();
        for (i, ms) in self.reminders_ms.iter().enumerate() {
            out.push(Timer {
                kind: REMINDER.into(),
                index: i as u32 + 1,
                due_at: created_at + *ms as i64,
                fired_at: None,
            });
        }
        for (i, e) in self.escalate.iter().enumerate() {
            out.push(Timer {
                kind: ESCALATION.into(),
                index: i as u32 + 1,
                due_at: created_at + e.after_ms as i64,
                fired_at: None,
            });
        }
        out.sort_by_key(|t| t.due_at);
        out
    }
}

fn bad(msg: &str) -> Error {
    Error::InvalidArgument(format!("policy: {msg}"))
}

fn check_delay(what: &str, ms: u64) -> Result<()> {
    if ms == 0 {
        return Err(bad(&format!("{what} must be positive")));
    }
    if ms > MAX_DELAY_MS {
        return Err(bad(&format!("{what} must be at most ten years")));
    }
    Ok(())
}

fn check_entries(what: &str, entries: &[String]) -> Result<()> {
    if entries.len() > 50 {
        return Err(bad(&format!("{what} has more than 50 entries")));
    }
    for e in entries {
        crate::engine::check_text(what, e, crate::schema::MAX_ACTOR_BYTES)?;
    }
    Ok(())
}

/// The earliest unfired timer (the store indexes it to find due tasks).
pub fn next_timer(timers: &[Timer]) -> Option<i64> {
    timers
        .iter()
        .filter(|t| t.fired_at.is_none())
        .map(|t| t.due_at)
        .min()
}

/// Who may vote now: the policy's approvers plus those added by escalations that fired.
pub fn approvers_now(task: &Task) -> Vec<String> {
    let Some(p) = &task.policy else {
        return Vec::new();
    };
    let Some(a) = &p.approvers else {
        return Vec::new();
    };
    let mut out = a.any_of.clone();
    for t in task.timers.iter().filter(|t| t.kind == ESCALATION) {
        if t.fired_at.is_some()
            && let Some(e) = t
                .index
                .checked_sub(1)
                .and_then(|i| p.escalate.get(i as usize))
        {
            for add in &e.add_approvers {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(add)) {
                    out.push(add.clone());
                }
            }
        }
    }
    out
}

/// Whether `person` is named by the approvers list (their name, e-mail, role or a group).
pub fn is_listed(list: &[String], person: &Identity) -> bool {
    let handles = person.handles();
    list.iter()
        .any(|a| handles.iter().any(|h| a.eq_ignore_ascii_case(h)))
}

/// Whether `person` is the task's requester (by name or e-mail).
pub fn is_requester(task: &Task, person: &Identity) -> bool {
    let Some(r) = task.requested_by.as_deref() else {
        return false;
    };
    r.eq_ignore_ascii_case(&person.name)
        || person
            .email
            .as_deref()
            .is_some_and(|e| r.eq_ignore_ascii_case(e))
}

/// The approval's boolean in an answer to an approval schema (`None` for other answers).
pub fn approval_of(schema: &Value, response: &Value) -> Option<bool> {
    if !crate::dashboard::form::is_approval(schema) {
        return None;
    }
    let key = schema
        .get("required")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|k| schema["properties"][*k]["type"] == "boolean")?;
    response.get(key)?.as_bool()
}

/// How many approvals and rejections the task's votes hold.
pub fn tally(votes: &[Vote]) -> (u32, u32) {
    let yes = votes.iter().filter(|v| v.approve).count() as u32;
    (yes, votes.len() as u32 - yes)
}

/// Whether `rejections` end the task as rejected under `approvers`.
pub fn rejected(approvers: &Approvers, rejections: u32) -> bool {
    match approvers.reject_on {
        RejectOn::Any => rejections >= 1,
        RejectOn::Majority => rejections * 2 > approvers.required,
    }
}

/// Who is still asked on a task with approvers: the approvers list as it stands, minus those
/// who voted (entries naming a voter by name, e-mail or — for one-person entries — handle).
pub fn still_asked(task: &Task) -> Vec<String> {
    approvers_now(task)
        .into_iter()
        .filter(|a| {
            !task.votes.iter().any(|v| {
                v.by.eq_ignore_ascii_case(a)
                    || v.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(a))
            })
        })
        .collect()
}

/// One line on where a quorum task stands: "Your vote is recorded: 1 of 2 approvals. Still
/// asked: bob, role:finance."
pub fn vote_summary(task: &Task) -> String {
    let (yes, no) = tally(&task.votes);
    let required = task.policy.as_ref().map_or(1, Policy::required);
    let mut s = format!("Your vote is recorded: {yes} of {required} approvals");
    if no > 0 {
        s.push_str(&format!(
            ", {no} rejection{}",
            if no == 1 { "" } else { "s" }
        ));
    }
    s.push('.');
    let asked = still_asked(task);
    if !asked.is_empty() {
        s.push_str(&format!(" Still asked: {}.", asked.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_format_round_trips() {
        let p: Policy = serde_json::from_value(json!({
            "approvers": {"any_of": ["alice"], "required": 2, "reject_on": "majority"},
            "reminders_ms": [1000],
            "escalate": [{"after_ms": 5000, "notify": ["slack:@cfo"], "add_approvers": ["carol"]}],
            "on_timeout": {"default": {"approved": false}}
        }))
        .unwrap();
        assert_eq!(p.required(), 2);
        assert_eq!(p.on_timeout, OnTimeout::Default(json!({"approved": false})));
        let raise: Policy = serde_json::from_value(json!({"on_timeout": "raise"})).unwrap();
        assert!(raise.is_empty());
        let back: Policy = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_value::<Policy>(json!({"approver": {}})).is_err());
    }

    #[test]
    fn checks_refuse_nonsense() {
        let mut p = Policy {
            approvers: Some(Approvers {
                any_of: vec![],
                required: 1,
                exclude_requester: false,
                reject_on: RejectOn::Any,
            }),
            ..Default::default()
        };
        assert!(p.check().unwrap_err().to_string().contains("at least one"));
        p.approvers.as_mut().unwrap().any_of = vec!["a".into()];
        p.approvers.as_mut().unwrap().required = 0;
        assert!(p.check().is_err());
        p.approvers.as_mut().unwrap().required = 1;
        p.reminders_ms = vec![0];
        assert!(p.check().unwrap_err().to_string().contains("positive"));
        p.reminders_ms = vec![];
        p.escalate = vec![Escalation {
            after_ms: 1,
            notify: vec![],
            add_approvers: vec![],
        }];
        assert!(p.check().is_err());
    }

    #[test]
    fn majority_means_more_than_half_of_required() {
        let a = |required| Approvers {
            any_of: vec!["x".into()],
            required,
            exclude_requester: false,
            reject_on: RejectOn::Majority,
        };
        assert!(!rejected(&a(2), 1));
        assert!(rejected(&a(2), 2));
        assert!(!rejected(&a(3), 1));
        assert!(rejected(&a(3), 2));
        assert!(rejected(&a(1), 1));
    }

    #[test]
    fn timers_are_ordered_by_due_time() {
        let p = Policy {
            reminders_ms: vec![3000, 1000],
            escalate: vec![Escalation {
                after_ms: 2000,
                notify: vec!["email:a@b.c".into()],
                add_approvers: vec![],
            }],
            ..Default::default()
        };
        let t = p.timers(10);
        let due: Vec<_> = t
            .iter()
            .map(|t| (t.kind.as_str(), t.index, t.due_at))
            .collect();
        assert_eq!(
            due,
            vec![
                ("reminder", 2, 1010),
                ("escalation", 1, 2010),
                ("reminder", 1, 3010)
            ]
        );
        assert_eq!(next_timer(&t), Some(1010));
    }
}
