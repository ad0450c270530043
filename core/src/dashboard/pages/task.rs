//! The task page: its meta, payload, claim, outcome and the answer section.

use maud::{Markup, html};

use super::layout::{Main, badge, csrf, flash, layout, names, time};
use super::policy_card::policy_card;
use super::timeline::{deliveries, timeline};
use crate::dashboard::form;
use crate::dashboard::payload;
use crate::dashboard::view::TaskView;
use crate::model::{Status, Task};

/// The task page (`GET /tasks/{id}`).
pub fn task(v: &TaskView) -> Markup {
    let t = v.task;
    let body = html! {
        (flash(v.flash.as_ref()))
        nav.crumbs aria-label="Breadcrumb" { a href="/tasks" { "← Queue" } }
        div.page-head.task-head {
            h1 { (t.title) }
        }
        section.card #task-state data-live aria-label="Status" {
            div.state-line {
                (badge(t.status))
                (claim_line(v))
            }
            (claim_buttons(v))
            (meta(v))
        }
        @if t.policy.is_some() { (policy_card(v)) }
        section.card {
            h2 { "Request" }
            (payload::render(&t.payload))
            details.raw {
                summary { "Raw JSON" }
                pre.code { (serde_json::to_string_pretty(&t.payload).unwrap_or_default()) }
            }
        }
        section #task-outcome data-live {
            @if t.status.is_final() { (outcome(t)) }
        }
        section #task-respond data-respond {
            @if !t.status.is_final() { (respond(v)) }
        }
        section #task-deliveries data-live aria-label="Deliveries" {
            @if !v.deliveries.is_empty() { (deliveries(v.deliveries)) }
        }
        section.card #task-audit data-live {
            h2 { "Timeline" }
            (timeline(v.audit))
        }
    };
    let main = Main {
        task_id: Some(t.id.to_string()),
        status: Some(t.status.as_str()),
    };
    layout(&t.title, Some(v.viewer), main, body)
}

fn claim_line(v: &TaskView) -> Markup {
    let t = v.task;
    html! {
        @if t.status == Status::Pending {
            @match &t.claimed_by {
                Some(c) if *c == v.viewer.name => span.claim { "Claimed by you" @if let Some(at) = t.claimed_at { " · " (time(at)) } },
                Some(c) => span.claim { "Claimed by " strong { (c) } @if let Some(at) = t.claimed_at { " · " (time(at)) } },
                None => span.claim.muted { "Not claimed" },
            }
        }
    }
}

fn claim_buttons(v: &TaskView) -> Markup {
    let id = v.task.id;
    html! {
        @if v.task.status == Status::Pending && (v.may.claim || v.may.release) {
            div.claim-actions {
                @if v.may.claim {
                    form.inline method="post" action=(format!("/tasks/{id}/claim")) {
                        (csrf(v.viewer))
                        button.btn.secondary type="submit" { "Claim" }
                    }
                }
                @if v.may.release {
                    form.inline method="post" action=(format!("/tasks/{id}/release")) {
                        (csrf(v.viewer))
                        button.btn.secondary type="submit" { "Release" }
                    }
                }
            }
        }
    }
}

pub(super) fn meta(v: &TaskView) -> Markup {
    let t = v.task;
    let requested_by = v
        .audit
        .first()
        .filter(|e| e.kind == "created")
        .and_then(|e| e.actor.as_deref());
    let short = t.digest.get(..12).unwrap_or(&t.digest);
    html! {
        dl.meta {
            div { dt { "Namespace" } dd { (t.namespace) } }
            div { dt { "Key" } dd { code { (t.key) } } }
            @if let Some(r) = requested_by { div { dt { "Requested by" } dd { (r) } } }
            div { dt { "Assigned to" } dd { (names(&t.assign_to)) } }
            div { dt { "Created" } dd { (time(t.created_at)) } }
            div { dt { "Deadline" } dd {
                @match t.deadline { Some(d) => (time(d)), None => span.muted { "None" } }
            } }
            div { dt { "ID" } dd { code { (t.id) } } }
            div { dt { "Digest" } dd { code title=(t.digest) { (short) "…" } } }
        }
    }
}

pub(super) fn outcome(t: &Task) -> Markup {
    let ended = t.ended_at.unwrap_or(t.updated_at);
    html! {
        div class={"card outcome st-" (t.status.as_str())} {
            h2 { "Outcome" }
            @match t.status {
                Status::Completed => {
                    p {
                        "Answered"
                        @if let Some(b) = &t.answered_by { " by " strong { (b) } }
                        @if let Some(c) = &t.answered_via { " via " (c) }
                        " at " (time(ended)) "."
                    }
                    @if let Some(r) = &t.response { (payload::render(r)) }
                }
                Status::TimedOut if t.defaulted() => {
                    p { "Timed out at " (time(ended)) ": the policy's " strong { "default answer" } " was returned to the agent." }
                    @if let Some(r) = &t.response { (payload::render(r)) }
                }
                Status::TimedOut => p { "Timed out at " (time(ended)) " without an answer." },
                Status::Cancelled => p {
                    "Cancelled"
                    @if let Some(b) = &t.cancelled_by { " by " strong { (b) } }
                    " at " (time(ended))
                    @match &t.cancel_reason { Some(r) => { ": " q { (r) } } None => "." }
                },
                Status::VerificationExhausted => p {
                    "Ended at " (time(ended)) ": the answer did not pass verification and the attempts ran out."
                },
                Status::Pending => {},
            }
        }
    }
}

pub(super) fn respond(v: &TaskView) -> Markup {
    let t = v.task;
    let schema = &t.response_schema;
    html! {
        @if v.may.answer {
            section.card.answer aria-labelledby="answer-h" {
                h2 #answer-h { "Your answer" }
                form.answer method="post" action=(format!("/tasks/{}/answer", t.id)) novalidate autocomplete="off" {
                    (csrf(v.viewer))
                    (form::fields(schema, &v.form))
                    @if !form::is_approval(schema) {
                        div.actions { button.btn.primary type="submit" { "Submit answer" } }
                    }
                }
            }
        } @else {
            div.card.notice {
                p {
                    @match &t.claimed_by {
                        Some(c) if *c != v.viewer.name => {
                            "Claimed by " strong { (c) } ": only they or an admin can answer it now."
                        }
                        _ if t.votes.iter().any(|x| x.by == v.viewer.name) => {
                            "You have voted; the task waits for the other approvers."
                        }
                        _ if t.policy.as_ref().is_some_and(|p| p.approvers.is_some()) => {
                            "You cannot answer this task: you are not one of its approvers."
                        }
                        _ => "You cannot answer this task here: it is not assigned to you.",
                    }
                }
            }
        }
        @if v.may.cancel {
            details.danger {
                summary { "Cancel this task…" }
                form method="post" action=(format!("/tasks/{}/cancel", t.id)) {
                    (csrf(v.viewer))
                    div.field {
                        label for="cancel-reason" { "Reason " span.opt { "optional" } }
                        input #cancel-reason type="text" name="reason" maxlength="500";
                    }
                    p.hint { "The waiting agent is told the task was cancelled, with this reason." }
                    button.btn.danger type="submit" { "Cancel task" }
                }
            }
        }
    }
}
