//! The task page's history: its deliveries and its audit timeline.

use maud::{Markup, html};
use serde_json::Value;

use super::layout::{names, time};
use super::queue::deliveries_failed_words;
use crate::model::AuditEvent;
use crate::store::outbox::Delivery;

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
pub(super) fn deliveries(list: &[Delivery]) -> Markup {
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

pub(super) fn timeline(audit: &[AuditEvent]) -> Markup {
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
