//! The task page's approval card: approvers, votes, reminders and escalations.

use maud::{Markup, html};
use serde_json::Value;

use super::layout::{names, time};
use crate::dashboard::view::TaskView;
use crate::model::Status;
use crate::policy::{self, OnTimeout, RejectOn};

/// Votes so far and who is still asked; the timers ahead and behind; what the deadline does.
pub(super) fn policy_card(v: &TaskView) -> Markup {
    let t = v.task;
    let Some(p) = &t.policy else {
        return html! {};
    };
    let (yes, no) = policy::tally(&t.votes);
    let mine = t.votes.iter().find(|x| x.by == v.viewer.name);
    let asked = policy::still_asked(t);
    html! {
        section.card #task-policy data-live aria-label="Approvals and timers" {
            @if let Some(a) = &p.approvers {
                h2 { "Approvals" }
                p.tally {
                    strong { (yes) " of " (a.required) } " approval" @if a.required != 1 { "s" }
                    @if no > 0 { " · " strong { (no) } " rejection" @if no != 1 { "s" } }
                    span.muted {
                        " · "
                        @match a.reject_on {
                            RejectOn::Any => "one rejection ends it",
                            RejectOn::Majority => "rejections end it once they are more than half of the approvals needed",
                        }
                        @if a.exclude_requester { " · the requester may not approve" }
                    }
                }
                @if let Some(m) = mine {
                    p.mine { "You voted to " strong { @if m.approve { "approve" } @else { "reject" } } " at " (time(m.at)) "." }
                }
                @if !t.votes.is_empty() {
                    table.votes {
                        thead { tr { th { "Who" } th { "Vote" } th { "Via" } th { "When" } } }
                        tbody {
                            @for x in &t.votes {
                                tr {
                                    td data-label="Who" { (x.by) }
                                    td data-label="Vote" {
                                        @if x.approve { span.vote.yes { "Approve" } } @else { span.vote.no { "Reject" } }
                                        @if let Some(c) = x.response.get("comment").and_then(Value::as_str) { " " q { (c) } }
                                    }
                                    td data-label="Via" { (x.channel) }
                                    td data-label="When" { (time(x.at)) }
                                }
                            }
                        }
                    }
                }
                @if t.status == Status::Pending && !asked.is_empty() {
                    p { "Still asked: " (names(&asked)) }
                }
            }
            @if !t.timers.is_empty() || t.deadline.is_some() {
                h2 { "Schedule" }
                ol.schedule {
                    @for x in &t.timers {
                        li class={ @if x.fired_at.is_some() { "done" } @else { "ahead" } } {
                            strong {
                                @if x.kind == policy::REMINDER { "Reminder " (x.index) } @else { "Escalation " (x.index) }
                            }
                            @if x.kind == policy::ESCALATION {
                                @if let Some(e) = x.index.checked_sub(1).and_then(|i| p.escalate.get(i as usize)) {
                                    @if !e.notify.is_empty() { " · notifies " (names(&e.notify)) }
                                    @if !e.add_approvers.is_empty() { " · adds approvers " (names(&e.add_approvers)) }
                                }
                            }
                            " · "
                            @match x.fired_at {
                                Some(at) => { "fired " (time(at)) }
                                None if t.status.is_final() => span.muted { "not needed" },
                                None => { "due " (time(x.due_at)) }
                            }
                        }
                    }
                    @if let Some(d) = t.deadline {
                        li class={ @if t.status == Status::TimedOut { "done" } @else { "ahead" } } {
                            strong { "Deadline" } " · " (time(d)) " · "
                            @match &p.on_timeout {
                                OnTimeout::Raise => "then the task times out (the agent is told, never a made-up answer)",
                                OnTimeout::Default(_) => "then the policy's default answer is returned, marked as a default",
                            }
                        }
                    }
                }
            }
        }
    }
}
