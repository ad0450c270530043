//! The queue page: status tabs with counts, filters, the task table, paging.

use maud::{Markup, html};

use super::layout::{Main, badge, layout, names, status_label, time};
use crate::dashboard::view::QueueView;
use crate::model::{Status, Task};
use crate::policy;

pub(super) const ALL_STATUSES: [Status; 5] = [
    Status::Pending,
    Status::Completed,
    Status::TimedOut,
    Status::Cancelled,
    Status::VerificationExhausted,
];

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
pub(super) fn deliveries_failed_words(n: u64) -> String {
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
