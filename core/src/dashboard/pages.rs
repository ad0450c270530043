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
use super::view::{Flash, LoginView, QueueView, SetupView, TaskView, Viewer};
use crate::model::{AuditEvent, Status, Task, format_ms};
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
                            nav aria-label="Main" { a href="/tasks" { "Queue" } }
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
fn queue_href(status: &str, assignee: &str, key: &str, cursor: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("status", status), ("assignee", assignee), ("key", key)] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
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
    let filtered = !assignee.is_empty() || !key.is_empty();
    let body = html! {
        div.page-head {
            h1 { "Tasks" }
        }
        nav.tabs #queue-counts data-live aria-label="Status" {
            @for (name, label, n) in tabs {
                a class={"tab st-" (name)} href=(queue_href(name, assignee, key, None))
                    aria-current=[(name == current).then_some("page")] {
                    (label) " " span.count { (n) }
                }
            }
        }
        form.filters method="get" action="/tasks" role="search" {
            input type="hidden" name="status" value=(current);
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
                @if filtered { a.clear href=(queue_href(current, "", "", None)) { "Clear" } }
            }
        }
        div #queue-list data-live {
            @if v.tasks.is_empty() {
                div.empty {
                    p.empty-title {
                        @if current == "pending" { "Nothing waiting for you." } @else { "No tasks here." }
                    }
                    p.muted {
                        @if filtered { "No task matches these filters." }
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
                    tbody { @for t in v.tasks { (queue_row(t)) } }
                }
            }
            @if let Some(c) = v.next_cursor {
                nav.pager aria-label="Pages" {
                    a.btn.secondary href=(queue_href(current, assignee, key, Some(c))) rel="next" { "Older →" }
                }
            }
        }
    };
    layout("Tasks", Some(v.viewer), Main::default(), body)
}

fn queue_row(t: &Task) -> Markup {
    html! {
        tr {
            td.title data-label="Task" {
                a href=(format!("/tasks/{}", t.id)) { (t.title) }
                div.sub { span.ns { (t.namespace) } " · " code { (t.key) } }
            }
            td data-label="Status" { (badge(t.status)) }
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
            "created" | "answer_accepted" | "timed_out" | "claimed" | "released" => {}
            _ => {
                @if e.data.as_object().is_some_and(|m| !m.is_empty()) {
                    pre.ev-data { (serde_json::to_string(&e.data).unwrap_or_default()) }
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
