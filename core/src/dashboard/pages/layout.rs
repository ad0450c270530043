//! The layout every page shares, and the small pieces pages are built from (badges, times,
//! flash messages, the CSRF field); the one-message page.

use maud::{DOCTYPE, Markup, html};

use crate::dashboard::view::{Flash, Viewer};
use crate::model::{Status, format_ms};
use crate::users::Role;

/// Attributes of `<main>`: the task page names its task for the event stream and its status
/// for the script.
#[derive(Default)]
pub(super) struct Main<'a> {
    pub(super) task_id: Option<String>,
    pub(super) status: Option<&'a str>,
}

pub(super) fn layout(title: &str, viewer: Option<&Viewer>, main: Main, body: Markup) -> Markup {
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

pub(super) fn flash(f: Option<&Flash>) -> Markup {
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

pub(super) fn badge(s: Status) -> Markup {
    html! { span class={"badge st-" (s.as_str())} { (status_label(s)) } }
}

/// A time the script shows in the reader's locale; UTC text until then.
pub(super) fn time(ms: i64) -> Markup {
    let rfc = format_ms(ms);
    let text = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| rfc.clone());
    html! { time datetime=(rfc) title=(rfc) { (text) } }
}

pub(super) fn names(list: &[String]) -> Markup {
    html! {
        @if list.is_empty() { span.muted { "Anyone" } }
        @for (i, n) in list.iter().enumerate() { @if i > 0 { ", " } (n) }
    }
}

pub(super) fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.csrf); }
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
