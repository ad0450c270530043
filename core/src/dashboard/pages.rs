//! The dashboard's pages, all in one layout. Pages carry no inline script, style or event
//! handler (they are served under a strict CSP); `app.js` adds live updates and local times.
//!
//! Live updates: every element with `data-live` (each with an `id`) is replaced by its
//! namesake from a fresh copy of the page when a `change` event arrives. On the task page the
//! answer section (`data-respond`) is outside those, so typing is never lost, and is replaced
//! only once the fresh page's `<main data-status>` is no longer `pending`.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::form;
use super::payload;
use super::view::{EffectsView, Flash, LoginView, QueueView, SetupView, TaskView, Viewer};
use crate::model::{AuditEvent, Status, Task, format_ms};
use crate::policy::{self, OnTimeout, RejectOn};
use crate::store::outbox::Delivery;
use crate::users::Role;

const ALL_STATUSES: [Status; 5] = [
    Status::Pending,
    Status::Completed,
    Status::TimedOut,
    Status::Cancelled,
    Status::VerificationExhausted,
];

// ---------------------------------------------------------------------------------------
// Layout and small pieces.

/// Attributes of `<main>`: the task page names its task for the event stream and its status
/// for the script.
#[derive(Default)]
struct Main<'a> {
    task_id: Option<String>,
    status: Option<&'a str>,
}

fn layout(title: &str, viewer: Option<&Viewer>, main: Main, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · inloop" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    div.top-inner {
                        a.brand href="/tasks" { span.brand-mark aria-hidden="true" { "◉" } "inloop" }
                        @if let Some(v) = viewer {
                            nav aria-label="Main" {
                                a href="/tasks" { "Queue" }
                                @if v.role == Role::Admin {
                                    " " a href="/effects" { "Effects in doubt" }
                                }
                            }
                            div.who {
                                span.who-name { (v.name) }
                                " "
                                span.role { (role_name(v.role)) }
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(v.csrf);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main data-task-id=[main.task_id] data-status=[main.status] {
                    (body)
                }
            }
        }
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "Admin",
        Role::Reviewer => "Reviewer",
    }
}

fn flash(f: Option<&Flash>) -> Markup {
    html! {
        @match f {
            Some(Flash::Ok(t)) => div.flash.ok role="status" { (t) },
            Some(Flash::Error(t)) => div.flash.err role="alert" { (t) },
            None => {},
        }
    }
}

/// Words for a status.
pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Pending => "Pending",
        Status::Completed => "Completed",
        Status::TimedOut => "Timed out",
        Status::Cancelled => "Cancelled",
        Status::VerificationExhausted => "Verification exhausted",
    }
}

fn badge(s: Status) -> Markup {
    html! { span class={"badge st-" (s.as_str())} { (status_label(s)) } }
}

/// A time the script shows in the reader's locale; UTC text until then.
fn time(ms: i64) -> Markup {
    let rfc = format_ms(ms);
    let text = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| rfc.clone());
    html! { time datetime=(rfc) title=(rfc) { (text) } }
}

fn names(list: &[String]) -> Markup {
    html! {
        @if list.is_empty() { span.muted { "Anyone" } }
        @for (i, n) in list.iter().enumerate() { @if i > 0 { ", " } (n) }
    }
}

fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
}

// ---------------------------------------------------------------------------------------
// Queue.

/// `/tasks?...` with the given filters (empty ones left out).
fn queue_href(
    status: &str,
    assignee: &str,
    key: &str,
    failed: bool,
    cursor: Option<&str>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("status", status), ("assignee", assignee), ("key", key)] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    if failed {
        q.append_pair("deliveries", "failed");
    }
    if let Some(c) = cursor {
        q.append_pair("cursor", c);
    }
    let q = q.finish();
    if q.is_empty() {
        "/tasks".into()
    } else {
        format!("/tasks?{q}")
    }
}

/// The queue page (`GET /tasks`).
pub fn queue(v: &QueueView) -> Markup {
    let f = v.filter;
    let current = f.status.as_deref().unwrap_or("pending");
    let assignee = f.assignee.as_deref().unwrap_or("");
    let key = f.key.as_deref().unwrap_or("");
    let total: u64 = v.counts.iter().map(|(_, n)| n).sum();
    let tabs = ALL_STATUSES
        .iter()
        .map(|s| {
            let n = v.counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
            (s.as_str(), status_label(*s), n)
        })
        .chain([("all", "All", total)]);
    let failed = f.failed_only();
    let filtered = !assignee.is_empty() || !key.is_empty() || failed;
    let body = html! {
        div.page-head {
            h1 { "Tasks" }
            div.alerts #queue-alerts data-live {
                @if v.failed_total > 0 {
                    a.chip.dlv-failed href=(queue_href("all", assignee, key, true, None))
                        aria-current=[failed.then_some("page")]
                        title="Deliveries the outbox gave up on: open a task to see why" {
                        span.chip-mark aria-hidden="true" { "!" }
                        (deliveries_failed_words(v.failed_total))
                    }
                }
            }
        }
        nav.tabs #queue-counts data-live aria-label="Status" {
            @for (name, label, n) in tabs {
                a class={"tab st-" (name)} href=(queue_href(name, assignee, key, failed, None))
                    aria-current=[(name == current).then_some("page")] {
                    (label) " " span.count { (n) }
                }
            }
        }
        form.filters method="get" action="/tasks" role="search" {
            input type="hidden" name="status" value=(current);
            @if failed { input type="hidden" name="deliveries" value="failed"; }
            div.filter {
                label for="q-assignee" { "Assignee" }
                input #q-assignee type="text" name="assignee" value=(assignee)
                    placeholder="name, e-mail or role:NAME" autocomplete="off";
            }
            div.filter {
                label for="q-key" { "Key starts with" }
                input #q-key type="text" name="key" value=(key) autocomplete="off";
            }
            div.filter-actions {
                button.btn.secondary type="submit" { "Filter" }
                @if filtered { a.clear href=(queue_href(current, "", "", false, None)) { "Clear" } }
            }
        }
        @if failed {
            p.filter-note role="status" {
                "Only tasks with a failed delivery. "
                a href=(queue_href(current, assignee, key, false, None)) { "Show every task" }
            }
        }
        div #queue-list data-live {
            @if v.tasks.is_empty() {
                div.empty {
                    p.empty-title {
                        @if current == "pending" { "Nothing waiting for you." } @else { "No tasks here." }
                    }
                    p.muted {
                        @if failed { "No task here has a failed delivery." }
                        @else if filtered { "No task matches these filters." }
                        @else if current == "pending" { "New requests from agents appear here as they arrive." }
                        @else { "Tasks with this status will be listed here." }
                    }
                }
            } @else {
                table.tasks {
                    thead { tr {
                        th scope="col" { "Task" } th scope="col" { "Status" }
                        th scope="col" { "Assigned to" } th scope="col" { "Claimed by" }
                        th scope="col" { "Created" } th scope="col" { "Deadline" }
                    } }
                    tbody { @for t in v.tasks { (queue_row(t, v.failed.get(&t.id).copied().unwrap_or(0))) } }
                }
            }
            @if let Some(c) = v.next_cursor {
                nav.pager aria-label="Pages" {
                    a.btn.secondary href=(queue_href(current, assignee, key, failed, Some(c))) rel="next" { "Older →" }
                }
            }
        }
    };
    layout("Tasks", Some(v.viewer), Main::default(), body)
}

/// "1 failed delivery", "3 failed deliveries".
fn deliveries_failed_words(n: u64) -> String {
    format!("{n} failed deliver{}", if n == 1 { "y" } else { "ies" })
}

fn queue_row(t: &Task, failed: u64) -> Markup {
    html! {
        tr class=[(failed > 0).then_some("has-failed")] {
            td.title data-label="Task" {
                a href=(format!("/tasks/{}", t.id)) { (t.title) }
                div.sub { span.ns { (t.namespace) } " · " code { (t.key) } }
            }
            td data-label="Status" {
                (badge(t.status))
                @if let (Status::Pending, Some(a)) = (t.status, t.policy.as_ref().and_then(|p| p.approvers.as_ref())) {
                    @if a.required > 1 {
                        " " span.votes-count title="Approvals so far" { (policy::tally(&t.votes).0) "/" (a.required) }
                    }
                }
                @if failed > 0 {
                    " "
                    a.badge.dlv-failed href=(format!("/tasks/{}#task-deliveries", t.id))
                        title="The outbox gave up on a delivery of this task" {
                        (deliveries_failed_words(failed))
                    }
                }
            }
            td data-label="Assigned to" { (names(&t.assign_to)) }
            td data-label="Claimed by" {
                @match &t.claimed_by { Some(c) => (c), None => span.muted { "—" } }
            }
            td data-label="Created" { (time(t.created_at)) }
            td data-label="Deadline" {
                @match t.deadline { Some(d) => (time(d)), None => span.muted { "None" } }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Task.

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

fn meta(v: &TaskView) -> Markup {
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

/// Votes so far and who is still asked; the timers ahead and behind; what the deadline does.
fn policy_card(v: &TaskView) -> Markup {
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

fn outcome(t: &Task) -> Markup {
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

fn respond(v: &TaskView) -> Markup {
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

/// Words for an outbox row's event.
fn delivery_event_words(d: &Delivery) -> &'static str {
    match (d.channel.as_str(), d.event.as_str()) {
        (crate::store::outbox::CALLBACK, _) => "Outcome (callback)",
        (_, "created") => "New task",
        (_, "ended") => "Outcome",
        _ => "Event",
    }
}

/// The task's deliveries: where it was sent, and how that went. Failed rows stand out.
fn deliveries(list: &[Delivery]) -> Markup {
    let failed = list.iter().filter(|d| d.state == "failed").count() as u64;
    html! {
        div.card.deliveries {
            h2 {
                "Deliveries"
                @if failed > 0 { " " span.badge.dlv-failed { (deliveries_failed_words(failed)) } }
            }
            table.data.dlv {
                thead { tr {
                    th scope="col" { "Channel" } th scope="col" { "Target" }
                    th scope="col" { "Event" } th scope="col" { "State" }
                    th scope="col" { "Attempts" } th scope="col" { "Last error" }
                } }
                tbody {
                    @for d in list {
                        tr class={"dlv-row dlv-" (css_word(&d.state))} {
                            td data-label="Channel" { (d.channel) }
                            td.dlv-target data-label="Target" { code { (d.target) } }
                            td data-label="Event" { (delivery_event_words(d)) }
                            td data-label="State" {
                                @match d.state.as_str() {
                                    "done" => span.dlv-state.ok { "Delivered" @if let Some(at) = d.done_at { " " (time(at)) } },
                                    "failed" => span.dlv-state.err { "Failed" @if let Some(at) = d.done_at { " " (time(at)) } },
                                    "skipped" => span.dlv-state.muted { "Skipped" },
                                    _ => {
                                        @if d.attempts > 0 {
                                            span.dlv-state { "Retrying · next " (time(d.next_at)) }
                                        } @else {
                                            span.dlv-state { "Waiting" }
                                        }
                                    }
                                }
                            }
                            td data-label="Attempts" { (d.attempts) }
                            td.dlv-error data-label="Last error" {
                                @match &d.last_error { Some(e) => (e), None => span.muted { "—" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn timeline(audit: &[AuditEvent]) -> Markup {
    html! {
        @if audit.is_empty() {
            p.muted { "No events yet." }
        } @else {
            ol.timeline {
                @for e in audit {
                    li class={"ev ev-" (css_word(&e.kind))} {
                        div.ev-head {
                            span.ev-kind { (kind_words(e)) }
                            @if let Some(a) = &e.actor { " by " strong { (a) } }
                            @if let Some(c) = &e.channel { " via " (c) }
                            " · " (time(e.at))
                        }
                        (event_details(e))
                    }
                }
            }
        }
    }
}

/// Letters, digits and `_` only: safe inside a class name.
fn css_word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

fn kind_words(e: &AuditEvent) -> String {
    let s = |k: &str| e.data.get(k).and_then(Value::as_str);
    match e.kind.as_str() {
        "created" => "Created".into(),
        "answer_accepted" => "Answer accepted".into(),
        "answer_refused" => match s("reason") {
            Some(r) => format!("Answer refused: {}", r.replace('_', " ")),
            None => "Answer refused".into(),
        },
        "claimed" => "Claimed".into(),
        "released" => "Released".into(),
        "timed_out" => "Timed out".into(),
        "cancelled" => "Cancelled".into(),
        "verification_started" => "Sent to the verifier".into(),
        "verification_passed" => "Verification passed".into(),
        "verification_rejected" => "Verification rejected the answer".into(),
        "verification_inconclusive" => "Verification inconclusive".into(),
        "verification_exhausted" => "Verification attempts ran out".into(),
        "answer_reopened" => "Answer sent back by the agent's verifier".into(),
        "delivered" => match s("target") {
            Some(t) => format!("Delivered to {t}"),
            None => "Delivered".into(),
        },
        "delivery_failed" => match s("target") {
            Some(t) => format!("Delivery to {t} failed"),
            None => "Delivery failed".into(),
        },
        "link_refused" => "E-mail link refused".into(),
        "vote_recorded" => match e.data.get("approve").and_then(Value::as_bool) {
            Some(true) => "Voted to approve".into(),
            Some(false) => "Voted to reject".into(),
            None => "Vote recorded".into(),
        },
        "reminder_sent" => format!(
            "Reminder {} sent",
            e.data.get("index").and_then(Value::as_u64).unwrap_or(0)
        ),
        "escalated" => format!(
            "Escalation {}",
            e.data.get("index").and_then(Value::as_u64).unwrap_or(0)
        ),
        other => other.to_string(),
    }
}

fn event_details(e: &AuditEvent) -> Markup {
    let s = |k: &str| e.data.get(k).and_then(Value::as_str);
    let errors: Vec<(String, String)> = e
        .data
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .take(20)
                .map(|x| {
                    let p = x.get("path").and_then(Value::as_str).unwrap_or("");
                    let m = x.get("message").and_then(Value::as_str).unwrap_or("");
                    (p.to_string(), m.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    html! {
        @match e.kind.as_str() {
            "answer_refused" => {
                @if errors.is_empty() {
                    @if let Some(m) = s("message") { p.ev-detail { (m) } }
                } @else {
                    ul.ev-errors {
                        @for (p, m) in &errors {
                            li { @if !p.is_empty() { code { (p) } " " } (m) }
                        }
                    }
                }
            }
            "cancelled" => { @if let Some(r) = s("reason") { p.ev-detail { q { (r) } } } }
            "verification_rejected" | "verification_inconclusive" | "answer_reopened"
            | "delivery_failed" | "link_refused" => {
                @if let Some(r) = s("reason").or_else(|| s("error")).or_else(|| s("message")) {
                    p.ev-detail { (r) }
                }
            }
            "vote_recorded" => {
                p.ev-detail {
                    (e.data.get("approvals").and_then(Value::as_u64).unwrap_or(0)) " of "
                    (e.data.get("required").and_then(Value::as_u64).unwrap_or(0)) " approvals"
                }
            }
            "escalated" => {
                @let list = |k: &str| -> Vec<String> {
                    e.data.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
                };
                @let notify = list("notify");
                @let add = list("add_approvers");
                p.ev-detail {
                    @if !notify.is_empty() { "Notified " (names(&notify)) ". " }
                    @if !add.is_empty() { "Added approvers " (names(&add)) "." }
                }
            }
            "reminder_sent" => {}
            "created" | "answer_accepted" | "timed_out" | "claimed" | "released"
            | "verification_started" | "verification_passed" | "verification_exhausted"
            | "delivered" => {}
            _ => {
                @if e.data.as_object().is_some_and(|m| !m.is_empty()) {
                    pre.ev-data { (serde_json::to_string(&e.data).unwrap_or_default()) }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Effects in doubt.

/// The effects-in-doubt page (`GET /effects`, admins): every effect whose attempt began and
/// never recorded an outcome, with "Mark done" and "Allow retry" (each a CSRF-protected post
/// to `/effects/resolve` naming the attempt shown, so a stale page cannot resolve a newer
/// attempt).
pub fn effects(v: &EffectsView) -> Markup {
    let body = html! {
        (flash(v.flash.as_ref()))
        div.page-head { h1 { "Effects in doubt" } }
        div.card.notice {
            p {
                "An agent began each of these side effects (with " code { "once(key, fn)" } ") and "
                "never recorded a result: its process may have died inside the effect, or may "
                "still be running it. inloop will not run them again on its own."
            }
            p {
                "Before you resolve one, make sure its process is gone, and find out whether the "
                "effect happened (in the system it acts on). " strong { "Mark done" } " if it "
                "happened: the agent gets the result you give. " strong { "Allow retry" } " if it "
                "did not: the next call runs it again."
            }
        }
        div #effects-list {
            @if v.effects.is_empty() {
                div.empty {
                    p.empty-title { "No effect is in doubt." }
                    p.muted { "Effects whose process stopped before recording a result appear here." }
                }
            } @else {
                table.tasks.effects {
                    thead { tr {
                        th scope="col" { "Effect" } th scope="col" { "Attempt" }
                        th scope="col" { "Started" } th scope="col" { "By" }
                        th scope="col" { "Resolve" }
                    } }
                    tbody { @for e in v.effects { (effect_row(v, e)) } }
                }
            }
        }
    };
    layout("Effects in doubt", Some(v.viewer), Main::default(), body)
}

fn effect_row(v: &EffectsView, e: &crate::effects::Effect) -> Markup {
    let typed = v
        .typed
        .filter(|(ns, key, _, _)| *ns == e.namespace && *key == e.key);
    let (result, note) = typed.map_or(("null", ""), |(_, _, r, n)| (r, n));
    let hidden = html! {
        (csrf(v.viewer))
        input type="hidden" name="namespace" value=(e.namespace);
        input type="hidden" name="key" value=(e.key);
        input type="hidden" name="attempt" value=(e.attempt);
    };
    html! {
        tr {
            td data-label="Effect" {
                code { (e.key) }
                div.sub { span.ns { (e.namespace) } }
                @if let Some(err) = &e.error { div.sub.muted { (err) } }
            }
            td data-label="Attempt" { (e.attempt) }
            td data-label="Started" { (time(e.started_at)) }
            td data-label="By" {
                @match &e.started_by { Some(b) => (b), None => span.muted { "unknown" } }
            }
            td data-label="Resolve" {
                form.inline method="post" action="/effects/resolve" {
                    (hidden)
                    input type="hidden" name="action" value="allow_retry";
                    button.btn.secondary type="submit" { "Allow retry" }
                }
                details.danger open[typed.is_some()] {
                    summary { "Mark done…" }
                    form method="post" action="/effects/resolve" {
                        (hidden)
                        input type="hidden" name="action" value="mark_done";
                        div.field {
                            label for={"result-" (e.id)} { "Result " span.opt { "JSON" } }
                            textarea.code id={"result-" (e.id)} name="result" rows="3" { (result) }
                            p.hint { "What the agent's " code { "once" } " call returns from now on." }
                        }
                        div.field {
                            label for={"note-" (e.id)} { "Note " span.opt { "optional" } }
                            input id={"note-" (e.id)} type="text" name="note" value=(note) maxlength="500";
                        }
                        button.btn.primary type="submit" { "Mark done" }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sign-in, setup, messages.

/// The sign-in page (`GET /login`); posts `username`, `password`, `csrf`, `next` to `/login`.
pub fn login(v: &LoginView) -> Markup {
    let body = html! {
        div.auth.card {
            h1 { "Sign in" }
            p.muted { "Review and answer the requests your agents are waiting on." }
            @if let Some(e) = v.error { div.flash.err role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(v.csrf);
                input type="hidden" name="next" value=(v.next);
                div.field {
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(v.username)
                        autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus;
                }
                div.field {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                }
                button.btn.primary.wide type="submit" { "Sign in" }
            }
        }
    };
    layout("Sign in", None, Main::default(), body)
}

/// The first-run page (`GET /setup?token=...`); posts `token`, `csrf`, `name`, `email`,
/// `password`, `password2` to `/setup`.
pub fn setup(v: &SetupView) -> Markup {
    let body = html! {
        div.auth.card {
            h1 { "Set up inloop" }
            p { "Create the first administrator account. This link works once: after this, people sign in and admins add more users." }
            @if let Some(e) = v.error { div.flash.err role="alert" { (e) } }
            form method="post" action="/setup" {
                input type="hidden" name="token" value=(v.token);
                input type="hidden" name="csrf" value=(v.csrf);
                div.field {
                    label for="name" { "Username" }
                    input #name type="text" name="name" value=(v.name) autocomplete="username"
                        autocapitalize="none" spellcheck="false" required autofocus;
                }
                div.field {
                    label for="email" { "E-mail " span.opt { "optional" } }
                    input #email type="email" name="email" value=(v.email) autocomplete="email";
                }
                div.field {
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="new-password" required;
                }
                div.field {
                    label for="password2" { "Password again" }
                    input #password2 type="password" name="password2" autocomplete="new-password" required;
                }
                button.btn.primary.wide type="submit" { "Create admin account" }
            }
        }
    };
    layout("Set up", None, Main::default(), body)
}

/// A page with one message: not found, forbidden, setup already done, errors.
pub fn message(title: &str, text: &str, viewer: Option<&Viewer>) -> Markup {
    let body = html! {
        div.message.card {
            h1 { (title) }
            p { (text) }
            p {
                @if viewer.is_some() { a href="/tasks" { "Back to the queue" } }
                @else { a href="/login" { "Sign in" } }
            }
        }
    };
    layout(title, viewer, Main::default(), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::view::{FormState, Permissions, QueueFilter};
    use crate::error::FieldError;
    use serde_json::json;
    use uuid::Uuid;

    const XSS: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(1)>"#;
    const T0: i64 = 1_714_557_000_000; // 2024-05-01T09:50:00Z

    fn viewer(role: Role) -> Viewer {
        Viewer {
            name: "alice".into(),
            role,
            csrf: "tok123".into(),
        }
    }

    fn task(status: Status) -> Task {
        Task {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            namespace: "billing".into(),
            key: "refund-A-1042".into(),
            title: "Approve a refund of 500 EUR for order A-1042?".into(),
            payload: json!({
                "order": {"id": "A-1042", "amount": 500.0, "currency": "EUR",
                          "customer": "Dana Scully", "url": "https://shop.example.com/orders/A-1042"},
                "reason": "Customer reports the parcel arrived damaged.\nPhotos attached in the ticket.",
                "items": [{"sku": "KB-01", "name": "Keyboard", "qty": 1, "price": 420.0},
                          {"sku": "MS-02", "name": "Mouse", "qty": 2, "price": 40.0}],
                "flags": ["first_refund", "vip"],
                "risk_score": 0.12,
                "previous_refunds": null
            }),
            payload_schema: None,
            response_schema: json!({
                "type": "object",
                "required": ["approved"],
                "properties": {
                    "approved": {"type": "boolean", "title": "Approve this refund?"},
                    "comment": {"type": "string", "title": "Comment", "description": "Shown to the agent."}
                }
            }),
            digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            notify: vec![],
            assign_to: vec!["role:reviewer".into()],
            status,
            response: None,
            answered_by: None,
            answered_via: None,
            cancelled_by: None,
            cancel_reason: None,
            claimed_by: None,
            claimed_at: None,
            created_at: T0,
            updated_at: T0,
            deadline: Some(T0 + 3_600_000),
            ended_at: None,
            verification: None,
            attempts: 0,
            rejections: vec![],
            verifying_until: None,
            verify_token: None,
            requested_by: None,
            policy: None,
            votes: vec![],
            timers: vec![],
            callback_url: None,
        }
    }

    fn delivery(channel: &str, target: &str, state: &str, error: Option<&str>) -> Delivery {
        Delivery {
            id: 1,
            task_id: Uuid::nil(),
            channel: channel.into(),
            target: target.into(),
            event: "ended".into(),
            idempotency_key: "dlv_x".into(),
            state: state.into(),
            attempts: 3,
            next_at: T0,
            last_error: error.map(str::to_string),
            result: None,
            created_at: T0,
            done_at: Some(T0 + 1000),
        }
    }

    fn event(
        seq: i64,
        kind: &str,
        actor: Option<&str>,
        channel: Option<&str>,
        data: Value,
    ) -> AuditEvent {
        AuditEvent {
            task_id: Uuid::nil(),
            seq,
            at: T0 + seq * 60_000,
            actor: actor.map(str::to_string),
            channel: channel.map(str::to_string),
            kind: kind.into(),
            data,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn audit() -> Vec<AuditEvent> {
        vec![
            event(
                0,
                "created",
                Some("refund-agent"),
                Some("python"),
                json!({"digest": "x"}),
            ),
            event(1, "claimed", Some("alice"), Some("dashboard"), json!({})),
            event(
                2,
                "answer_refused",
                Some("alice"),
                Some("dashboard"),
                json!({
                "reason": "invalid", "code": "invalid_answer", "message": "invalid answer",
                "errors": [{"path": "/approved", "message": "true is not of type \"string\""}]}),
            ),
            event(3, "mystery_kind", None, None, json!({"x": 1})),
        ]
    }

    fn counts() -> Vec<(Status, u64)> {
        ALL_STATUSES
            .iter()
            .zip([3, 12, 1, 2, 0])
            .map(|(s, n)| (*s, n))
            .collect()
    }

    fn task_page(
        t: &Task,
        may: Permissions,
        form: FormState,
        audit: &[AuditEvent],
        role: Role,
    ) -> String {
        let v = viewer(role);
        super::task(&TaskView {
            viewer: &v,
            task: t,
            audit,
            deliveries: &[],
            may,
            form,
            flash: None,
        })
        .into_string()
    }

    fn all_may() -> Permissions {
        Permissions {
            answer: true,
            claim: true,
            release: false,
            cancel: true,
        }
    }

    fn queue_page(tasks: &[Task], filter: &QueueFilter, next: Option<&str>) -> String {
        let v = viewer(Role::Reviewer);
        let c = counts();
        super::queue(&QueueView {
            viewer: &v,
            counts: &c,
            filter,
            tasks,
            next_cursor: next,
            failed: &Default::default(),
            failed_total: 0,
        })
        .into_string()
    }

    /// What the CSP forbids, and what every page has.
    fn assert_csp_clean_layout(h: &str) {
        assert!(h.starts_with("<!DOCTYPE html><html lang=\"en\">"), "{h}");
        assert!(h.contains(r#"<meta name="viewport""#) && h.contains("/static/app.css"));
        assert!(h.contains(r#"<script src="/static/app.js" defer></script>"#));
        assert_eq!(h.matches("<script").count(), 1, "one script, external: {h}");
        assert!(!h.contains("<style"), "{h}");
        // Escaped text holds no `<`, so each `<...>` is a real tag.
        for tag in h
            .split('<')
            .skip(1)
            .map(|t| &t[..t.find('>').unwrap_or(t.len())])
        {
            for name in attr_names(tag) {
                assert!(!name.starts_with("on") && name != "style", "<{tag}> in {h}");
            }
        }
    }

    /// The attribute names of a tag's text (`input type="x" checked` -> type, checked).
    fn attr_names(tag: &str) -> Vec<String> {
        let (mut names, mut cur, mut quoted, mut in_value) = (vec![], String::new(), false, false);
        for c in tag.chars() {
            match c {
                '"' => quoted = !quoted,
                _ if quoted => {}
                '=' => {
                    names.push(std::mem::take(&mut cur));
                    in_value = true;
                }
                ' ' => {
                    if !in_value && !cur.is_empty() {
                        names.push(std::mem::take(&mut cur));
                    }
                    cur.clear();
                    in_value = false;
                }
                c if !in_value => cur.push(c),
                _ => {}
            }
        }
        if !in_value && !cur.is_empty() {
            names.push(cur);
        }
        names.into_iter().skip(1).collect()
    }

    #[test]
    fn queue_lists_tasks_with_links_badges_and_times() {
        let t = task(Status::Pending);
        let h = queue_page(std::slice::from_ref(&t), &QueueFilter::default(), None);
        assert_csp_clean_layout(&h);
        assert!(
            h.contains(&format!(r#"<a href="/tasks/{}">Approve a refund"#, t.id)),
            "{h}"
        );
        assert!(
            h.contains(r#"<span class="badge st-pending">Pending</span>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<time datetime="2024-05-01T09:50:00.000Z""#),
            "{h}"
        );
        assert!(
            h.contains(r#"<nav class="tabs" id="queue-counts" data-live"#),
            "{h}"
        );
        assert!(h.contains(r#"<div id="queue-list" data-live>"#), "{h}");
        assert!(
            h.contains(r#"aria-current="page">Pending <span class="count">3</span>"#),
            "{h}"
        );
        assert!(h.contains(r#"All <span class="count">18</span>"#), "{h}");
        assert!(h.contains("alice") && h.contains("Reviewer") && h.contains(r#"action="/logout""#));
        assert!(h.contains(r#"name="csrf" value="tok123""#));
    }

    #[test]
    fn queue_links_keep_the_other_filters() {
        let f = QueueFilter {
            status: Some("completed".into()),
            assignee: Some("bob & co".into()),
            key: Some("refund-".into()),
            cursor: Some("c1".into()),
            deliveries: None,
        };
        let h = queue_page(&[task(Status::Completed)], &f, Some("next=1"));
        assert!(
            h.contains(r#"href="/tasks?status=timed_out&amp;assignee=bob+%26+co&amp;key=refund-""#),
            "{h}"
        );
        assert!(h.contains(r#"href="/tasks?status=completed&amp;assignee=bob+%26+co&amp;key=refund-&amp;cursor=next%3D1" rel="next""#), "{h}");
        assert!(
            h.contains(r#"<a class="clear" href="/tasks?status=completed">Clear</a>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<form class="filters" method="get" action="/tasks""#),
            "{h}"
        );
    }

    #[test]
    fn queue_empty_state() {
        let h = queue_page(&[], &QueueFilter::default(), None);
        assert!(
            h.contains("Nothing waiting for you.") && !h.contains("<table"),
            "{h}"
        );
        assert!(!h.contains("Older"), "{h}");
    }

    #[test]
    fn failed_deliveries_show_on_the_queue_and_the_task_page() {
        let t = task(Status::Pending);
        let mut quiet = task(Status::Completed);
        quiet.id = Uuid::from_u128(2);
        let v = viewer(Role::Reviewer);
        let c = counts();
        let failed = [(t.id, 2_u64)].into_iter().collect();
        let queue = |filter: &QueueFilter, total| {
            super::queue(&QueueView {
                viewer: &v,
                counts: &c,
                filter,
                tasks: &[t.clone(), quiet.clone()],
                next_cursor: None,
                failed: &failed,
                failed_total: total,
            })
            .into_string()
        };
        let h = queue(&QueueFilter::default(), 3);
        assert_csp_clean_layout(&h);
        // The header chip links to the filter; the row's badge to the task's deliveries.
        assert!(
            h.contains(r#"<div class="alerts" id="queue-alerts" data-live><a class="chip dlv-failed" href="/tasks?status=all&amp;deliveries=failed""#),
            "{h}"
        );
        assert!(h.contains("3 failed deliveries</a>"), "{h}");
        assert!(
            h.contains(&format!(
                r#"<a class="badge dlv-failed" href="/tasks/{}#task-deliveries""#,
                t.id
            )),
            "{h}"
        );
        assert_eq!(h.matches("class=\"badge dlv-failed\"").count(), 1, "{h}");
        assert!(h.contains("2 failed deliveries"), "{h}");
        // Nothing failed: no chip (the live region stays, empty).
        let h = queue(&QueueFilter::default(), 0);
        assert!(
            h.contains(r#"<div class="alerts" id="queue-alerts" data-live></div>"#),
            "{h}"
        );
        // The filter keeps itself across tabs and the form, and says how to leave it.
        let f = QueueFilter {
            deliveries: Some("failed".into()),
            ..Default::default()
        };
        let h = queue(&f, 1);
        assert!(h.contains("1 failed delivery</a>"), "{h}");
        assert!(
            h.contains(r#"href="/tasks?status=completed&amp;deliveries=failed""#),
            "{h}"
        );
        assert!(
            h.contains(r#"<input type="hidden" name="deliveries" value="failed">"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<a href="/tasks?status=pending">Show every task</a>"#),
            "{h}"
        );

        let list = [
            delivery(
                "webhook",
                "billing",
                "failed",
                Some("gave up after 5 attempts: 500"),
            ),
            delivery("callback", "https://engine.internal/hooks/x", "done", None),
        ];
        let page = super::task(&TaskView {
            viewer: &v,
            task: &t,
            audit: &[],
            deliveries: &list,
            may: all_may(),
            form: FormState::default(),
            flash: None,
        })
        .into_string();
        assert_csp_clean_layout(&page);
        assert!(
            page.contains(r#"<section id="task-deliveries" data-live aria-label="Deliveries">"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<tr class="dlv-row dlv-failed">"#),
            "{page}"
        );
        assert!(page.contains("gave up after 5 attempts: 500"), "{page}");
        assert!(
            page.contains(
                "<h2>Deliveries <span class=\"badge dlv-failed\">1 failed delivery</span></h2>"
            ),
            "{page}"
        );
        assert!(
            page.contains("<code>https://engine.internal/hooks/x</code>"),
            "{page}"
        );
        assert!(page.contains("Outcome (callback)"), "{page}");
        // No deliveries: the region is there, empty.
        let none = task_page(&t, all_may(), FormState::default(), &[], Role::Admin);
        assert!(
            none.contains(
                r#"<section id="task-deliveries" data-live aria-label="Deliveries"></section>"#
            ),
            "{none}"
        );
    }

    #[test]
    fn task_page_shows_meta_payload_form_and_timeline() {
        let t = task(Status::Pending);
        let h = task_page(&t, all_may(), FormState::default(), &audit(), Role::Admin);
        assert_csp_clean_layout(&h);
        assert!(
            h.contains(&format!(
                r#"<main id="main" data-task-id="{}" data-status="pending">"#,
                t.id
            )),
            "{h}"
        );
        assert!(
            h.contains("<h1>Approve a refund of 500 EUR for order A-1042?</h1>"),
            "{h}"
        );
        assert!(
            h.contains("<dt>Requested by</dt><dd>refund-agent</dd>"),
            "{h}"
        );
        assert!(h.contains(r#"<code title="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08">9f86d081884c…</code>"#), "{h}");
        assert!(
            h.contains(r#"<dt>customer</dt><dd><span class="v-str">Dana Scully</span>"#),
            "{h}"
        );
        assert!(
            h.contains(&format!(
                r#"<form class="answer" method="post" action="/tasks/{}/answer" novalidate"#,
                t.id
            )),
            "{h}"
        );
        assert!(
            h.contains("Approve</button>") && !h.contains("Submit answer"),
            "approval buttons only: {h}"
        );
        assert!(
            h.contains(&format!(r#"action="/tasks/{}/claim""#, t.id)),
            "{h}"
        );
        assert!(!h.contains("/release\""), "{h}");
        assert!(
            h.contains("<details class=\"danger\"><summary>Cancel this task…</summary>"),
            "{h}"
        );
        assert!(
            h.contains(&format!(r#"action="/tasks/{}/cancel""#, t.id))
                && h.contains(r#"name="reason""#)
        );
        assert!(h.contains(r#"<span class="ev-kind">Created</span> by <strong>refund-agent</strong> via python"#), "{h}");
        assert!(h.contains("Answer refused: invalid"), "{h}");
        assert!(
            h.contains(r#"<li><code>/approved</code> true is not of type &quot;string&quot;</li>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"<span class="ev-kind">mystery_kind</span>"#),
            "{h}"
        );
    }

    #[test]
    fn every_state_changing_form_carries_csrf() {
        let t = task(Status::Pending);
        let may = Permissions {
            answer: true,
            claim: true,
            release: true,
            cancel: true,
        };
        let h = task_page(&t, may, FormState::default(), &audit(), Role::Admin);
        let posts = h.split("method=\"post\"").count() - 1;
        assert_eq!(posts, 5, "logout, claim, release, answer, cancel: {h}");
        for part in h.split("method=\"post\"").skip(1) {
            let form = &part[..part.find("</form>").unwrap()];
            assert!(
                form.contains(r#"<input type="hidden" name="csrf" value="tok123">"#),
                "{form}"
            );
        }
    }

    /// The answer form must not sit inside anything the live update replaces.
    #[test]
    fn the_answer_form_is_outside_live_regions() {
        let h = task_page(
            &task(Status::Pending),
            all_may(),
            FormState::default(),
            &audit(),
            Role::Admin,
        );
        let form_at = h.find("<form class=\"answer\"").unwrap();
        let respond_at = h
            .find(r#"<section id="task-respond" data-respond>"#)
            .unwrap();
        assert!(respond_at < form_at, "{h}");
        // Where the answer section ends (sections nest inside it).
        let mut depth = 0;
        let mut respond_end = respond_at;
        for (i, _) in h[respond_at..].match_indices("section") {
            let at = respond_at + i;
            match &h[at - 1..at] {
                "<" => depth += 1,
                "/" => depth -= 1,
                _ => continue,
            }
            if depth == 0 {
                respond_end = at;
                break;
            }
        }
        assert!(respond_end > form_at, "{h}");
        // Every live region closes before the answer section opens or opens after it ends.
        for (i, _) in h.match_indices(" data-live") {
            let open = h[..i].rfind('<').unwrap();
            assert!(open < respond_at || open > respond_end, "{h}");
        }
        assert!(h.find(r#"id="task-state" data-live"#).is_some());
        assert!(h.find(r#"id="task-outcome" data-live"#).is_some());
    }

    #[test]
    fn a_pending_task_not_answerable_here_says_why() {
        let mut t = task(Status::Pending);
        t.claimed_by = Some("bob".into());
        t.claimed_at = Some(T0);
        let h = task_page(
            &t,
            Permissions::default(),
            FormState::default(),
            &[],
            Role::Reviewer,
        );
        assert!(!h.contains("<form class=\"answer\""), "{h}");
        assert!(
            h.contains("Claimed by <strong>bob</strong>: only they or an admin can answer it now."),
            "{h}"
        );
        assert!(!h.contains("Cancel this task"), "{h}");
        t.claimed_by = None;
        let h = task_page(
            &t,
            Permissions::default(),
            FormState::default(),
            &[],
            Role::Reviewer,
        );
        assert!(h.contains("it is not assigned to you"), "{h}");
    }

    #[test]
    fn generic_schemas_get_a_submit_button_and_errors_inline() {
        let mut t = task(Status::Pending);
        t.response_schema = json!({"type": "object", "required": ["amount"],
                                   "properties": {"amount": {"type": "integer", "minimum": 1}}});
        let errors = [FieldError {
            path: "/amount".into(),
            message: "0 is less than the minimum of 1".into(),
        }];
        let values = json!({"amount": 0});
        let form = FormState {
            values: Some(&values),
            errors: &errors,
            posted: None,
        };
        let h = task_page(&t, all_may(), form, &[], Role::Reviewer);
        assert!(h.contains("Submit answer</button>"), "{h}");
        assert!(h.contains(r#"name="/amount" value="0""#), "{h}");
        assert!(
            h.contains(r#"<p class="field-error" id="f1-err">0 is less than the minimum of 1</p>"#),
            "{h}"
        );
    }

    #[test]
    fn ended_tasks_show_the_outcome_instead_of_the_form() {
        let mut t = task(Status::Completed);
        t.response = Some(json!({"approved": true, "comment": "ok"}));
        t.answered_by = Some("alice".into());
        t.answered_via = Some("dashboard".into());
        t.ended_at = Some(T0 + 120_000);
        let h = task_page(&t, all_may(), FormState::default(), &[], Role::Admin);
        assert!(
            !h.contains("<form class=\"answer\"") && !h.contains("Cancel this task"),
            "{h}"
        );
        assert!(h.contains("Answered by <strong>alice</strong> via dashboard at <time datetime=\"2024-05-01T09:52:00.000Z\""), "{h}");
        assert!(
            h.contains(r#"<dt>comment</dt><dd><span class="v-str">ok</span>"#),
            "{h}"
        );
        assert!(h.contains(r#"data-status="completed""#), "{h}");

        let mut c = task(Status::Cancelled);
        c.cancelled_by = Some("root".into());
        c.cancel_reason = Some("duplicate".into());
        let h = task_page(&c, all_may(), FormState::default(), &[], Role::Admin);
        assert!(
            h.contains("Cancelled by <strong>root</strong> at ") && h.contains("<q>duplicate</q>"),
            "{h}"
        );

        let h = task_page(
            &task(Status::TimedOut),
            all_may(),
            FormState::default(),
            &[],
            Role::Admin,
        );
        assert!(
            h.contains("Timed out at ") && h.contains("badge st-timed_out"),
            "{h}"
        );
        let h = task_page(
            &task(Status::VerificationExhausted),
            all_may(),
            FormState::default(),
            &[],
            Role::Admin,
        );
        assert!(
            h.contains("attempts ran out") && h.contains("Verification exhausted"),
            "{h}"
        );
    }

    #[test]
    fn flash_messages_use_status_and_alert_roles() {
        let v = viewer(Role::Reviewer);
        let t = task(Status::Pending);
        let page = |flash| {
            super::task(&TaskView {
                viewer: &v,
                task: &t,
                audit: &[],
                deliveries: &[],
                may: all_may(),
                form: FormState::default(),
                flash,
            })
            .into_string()
        };
        assert!(
            page(Some(Flash::Ok("Claimed.".into())))
                .contains(r#"<div class="flash ok" role="status">Claimed.</div>"#)
        );
        assert!(
            page(Some(Flash::Error("Nope.".into())))
                .contains(r#"<div class="flash err" role="alert">Nope.</div>"#)
        );
    }

    #[test]
    fn login_and_setup_pages() {
        let h = login(&LoginView {
            csrf: "c1",
            username: "bob",
            error: Some("Wrong username or password."),
            next: "/tasks/x",
        })
        .into_string();
        assert_csp_clean_layout(&h);
        assert!(h.contains(r#"<form method="post" action="/login"><input type="hidden" name="csrf" value="c1"><input type="hidden" name="next" value="/tasks/x">"#), "{h}");
        assert!(
            h.contains(r#"value="bob" autocomplete="username""#)
                && h.contains(r#"autocomplete="current-password""#)
        );
        assert!(
            h.contains(r#"<div class="flash err" role="alert">Wrong username or password.</div>"#)
        );
        assert!(!h.contains("Sign out"), "{h}");

        let h = setup(&SetupView {
            token: "t0k",
            csrf: "c2",
            name: "",
            email: "",
            error: None,
        })
        .into_string();
        assert_csp_clean_layout(&h);
        for needle in [
            r#"name="token" value="t0k""#,
            r#"name="csrf" value="c2""#,
            r#"name="name""#,
            r#"name="email""#,
            r#"name="password""#,
            r#"name="password2""#,
            "first administrator",
        ] {
            assert!(h.contains(needle), "{needle}: {h}");
        }
        assert!(!h.contains("role=\"alert\""), "{h}");
    }

    #[test]
    fn message_page() {
        let h = message("Not found", "There is no task with this id.", None).into_string();
        assert_csp_clean_layout(&h);
        assert!(
            h.contains("<h1>Not found</h1>") && h.contains(r#"href="/login""#),
            "{h}"
        );
        let v = viewer(Role::Admin);
        let h = message("Forbidden", "No.", Some(&v)).into_string();
        assert!(
            h.contains("Back to the queue") && h.contains("Sign out"),
            "{h}"
        );
    }

    /// User-provided text is escaped in every page.
    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let mut t = task(Status::Pending);
        t.title = XSS.into();
        t.namespace = XSS.into();
        t.key = XSS.into();
        t.assign_to = vec![XSS.into()];
        t.claimed_by = Some(XSS.into());
        t.payload =
            json!({XSS: XSS, "rows": [{XSS: XSS}], "list": [XSS, "https://x.example/\"><script>"]});
        t.response_schema = json!({"type": "object", "title": XSS, "required": [XSS],
            "properties": {XSS: {"title": XSS, "description": XSS, "enum": [XSS, "b", "c", "d", "e"]},
                           "two": {"oneOf": [{"const": 1, "title": XSS}, {"const": 2, "title": XSS}]}}});
        let hostile_audit = vec![
            event(0, "created", Some(XSS), Some(XSS), json!({})),
            event(
                1,
                "answer_refused",
                Some(XSS),
                None,
                json!({"reason": XSS, "message": XSS,
                "errors": [{"path": XSS, "message": XSS}]}),
            ),
            event(2, XSS, Some(XSS), None, json!({XSS: XSS})),
            event(3, "cancelled", Some(XSS), None, json!({"reason": XSS})),
        ];
        let errors = [
            FieldError {
                path: XSS.into(),
                message: XSS.into(),
            },
            FieldError {
                path: String::new(),
                message: XSS.into(),
            },
        ];
        let v = Viewer {
            name: XSS.into(),
            role: Role::Admin,
            csrf: XSS.into(),
        };
        let mut pages = vec![];
        let form = FormState {
            values: Some(&t.payload),
            errors: &errors,
            posted: None,
        };
        let hostile_deliveries = vec![
            delivery(XSS, XSS, "failed", Some(XSS)),
            delivery("callback", XSS, XSS, None),
        ];
        pages.push(
            super::task(&TaskView {
                viewer: &v,
                task: &t,
                audit: &hostile_audit,
                deliveries: &hostile_deliveries,
                may: all_may(),
                form,
                flash: Some(Flash::Error(XSS.into())),
            })
            .into_string(),
        );
        let mut done = t.clone();
        done.status = Status::Completed;
        done.response = Some(json!({XSS: [XSS]}));
        done.answered_by = Some(XSS.into());
        done.answered_via = Some(XSS.into());
        let mut cancelled = t.clone();
        cancelled.status = Status::Cancelled;
        cancelled.cancelled_by = Some(XSS.into());
        cancelled.cancel_reason = Some(XSS.into());
        for ended in [&done, &cancelled] {
            pages.push(
                super::task(&TaskView {
                    viewer: &v,
                    task: ended,
                    audit: &hostile_audit,
                    deliveries: &hostile_deliveries,
                    may: all_may(),
                    form: FormState::default(),
                    flash: Some(Flash::Ok(XSS.into())),
                })
                .into_string(),
            );
        }
        let f = QueueFilter {
            status: Some(XSS.into()),
            assignee: Some(XSS.into()),
            key: Some(XSS.into()),
            cursor: None,
            deliveries: Some("failed".into()),
        };
        let c = counts();
        let failed = [(t.id, 2_u64)].into_iter().collect();
        pages.push(
            super::queue(&QueueView {
                viewer: &v,
                counts: &c,
                filter: &f,
                tasks: &[t.clone(), done],
                next_cursor: Some(XSS),
                failed: &failed,
                failed_total: 7,
            })
            .into_string(),
        );
        pages.push(
            login(&LoginView {
                csrf: XSS,
                username: XSS,
                error: Some(XSS),
                next: XSS,
            })
            .into_string(),
        );
        pages.push(
            setup(&SetupView {
                token: XSS,
                csrf: XSS,
                name: XSS,
                email: XSS,
                error: Some(XSS),
            })
            .into_string(),
        );
        pages.push(message(XSS, XSS, Some(&v)).into_string());
        for h in &pages {
            assert_csp_clean_layout(h);
            assert!(!h.contains("<img"), "{h}");
            assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{h}");
        }
    }

    /// `INLOOP_PREVIEW_DIR=/tmp/p cargo test ... write_previews` writes sample pages with the
    /// stylesheet inlined (for looking at them from file://); otherwise it only renders them.
    #[test]
    fn write_previews() {
        let queue_tasks: Vec<Task> = (0..6)
            .map(|i| {
                let mut t = task(
                    [
                        Status::Pending,
                        Status::Pending,
                        Status::Completed,
                        Status::TimedOut,
                        Status::Cancelled,
                        Status::VerificationExhausted,
                    ][i],
                );
                t.id = Uuid::from_u128(i as u128 + 1);
                t.created_at = T0 - i as i64 * 3_700_000;
                if i == 1 {
                    t.title = "Which plan should the customer be moved to?".into();
                    t.claimed_by = Some("bob".into());
                    t.assign_to = vec!["bob".into(), "alice@example.com".into()];
                    t.deadline = None;
                }
                t
            })
            .collect();
        let mut general = task(Status::Pending);
        general.title = "Classify the support ticket #8812".into();
        general.response_schema = json!({
            "type": "object", "required": ["category", "priority", "escalate", "reply_by"],
            "properties": {
                "category": {"enum": ["billing", "bug", "feature request", "account", "other"], "title": "Category"},
                "priority": {"oneOf": [{"const": 1, "title": "Low"}, {"const": 2, "title": "Normal"}, {"const": 3, "title": "Urgent"}]},
                "escalate": {"type": "boolean", "title": "Escalate to a human agent?"},
                "reply_by": {"type": "string", "format": "date", "title": "Reply by"},
                "refund_amount": {"type": "number", "minimum": 0, "maximum": 1000, "title": "Refund amount", "description": "In EUR; leave empty for none."},
                "tags": {"type": "array", "items": {"enum": ["angry", "repeat", "press", "vip"]}, "title": "Tags"},
                "customer_note": {"type": "string", "title": "Note to the customer", "maxLength": 2000},
                "contact": {"type": "object", "title": "Contact", "properties": {"email": {"type": "string", "format": "email"}, "phone": {"type": "string"}}},
                "extra": {"type": "array", "items": {"type": "object"}, "title": "Line items"}
            }
        });
        let errors = [
            FieldError {
                path: "/refund_amount".into(),
                message: "1200 is greater than the maximum of 1000".into(),
            },
            FieldError {
                path: String::new(),
                message: "\"escalate\" is a required property".into(),
            },
        ];
        let posted: Vec<(String, String)> = [
            ("/category", "bug"),
            ("/priority", "3"),
            ("/reply_by", "2024-05-03"),
            ("/refund_amount", "1200"),
            ("/tags", "repeat"),
            ("/customer_note", "Sorry about that.\nWe are on it."),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let mut done = task(Status::Completed);
        done.response = Some(json!({"approved": true, "comment": "Photos confirm the damage."}));
        done.answered_by = Some("alice".into());
        done.answered_via = Some("dashboard".into());
        done.ended_at = Some(T0 + 300_000);
        let mut full_audit = audit();
        full_audit.pop();
        full_audit.push(event(
            4,
            "answer_accepted",
            Some("alice"),
            Some("dashboard"),
            json!({}),
        ));
        let v = viewer(Role::Admin);
        let c = counts();
        let pages = [
            (
                "queue",
                super::queue(&QueueView {
                    viewer: &v,
                    counts: &c,
                    filter: &QueueFilter::default(),
                    tasks: &queue_tasks,
                    next_cursor: Some("abc"),
                    failed: &Default::default(),
                    failed_total: 0,
                })
                .into_string(),
            ),
            (
                "task",
                task_page(
                    &task(Status::Pending),
                    all_may(),
                    FormState::default(),
                    &audit()[..2],
                    Role::Admin,
                ),
            ),
            (
                "task-form",
                task_page(
                    &general,
                    all_may(),
                    FormState {
                        values: None,
                        errors: &errors,
                        posted: Some(&posted),
                    },
                    &audit()[..1],
                    Role::Reviewer,
                ),
            ),
            (
                "task-done",
                task_page(
                    &done,
                    all_may(),
                    FormState::default(),
                    &full_audit,
                    Role::Admin,
                ),
            ),
            (
                "login",
                login(&LoginView {
                    csrf: "c",
                    username: "",
                    error: None,
                    next: "/tasks",
                })
                .into_string(),
            ),
        ];
        let Ok(dir) = std::env::var("INLOOP_PREVIEW_DIR") else {
            return;
        };
        std::fs::create_dir_all(&dir).unwrap();
        let css = format!("<style>{}</style>", crate::dashboard::assets::APP_CSS);
        for (name, h) in pages {
            let h = h.replace(r#"<link rel="stylesheet" href="/static/app.css">"#, &css);
            std::fs::write(format!("{dir}/{name}.html"), h).unwrap();
        }
    }
}
