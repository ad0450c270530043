// TEMPORARY stand-in until the dashboard branch lands (replaced by the real pages).
use super::view::*;
use maud::{Markup, html};
pub fn queue(v: &QueueView) -> Markup {
    html! { h1 { "Queue" } @for t in v.tasks { a href=(format!("/tasks/{}", t.id)) { (t.title) } } }
}
pub fn task(v: &TaskView) -> Markup {
    html! { h1 { (v.task.title) } form method="post" action=(format!("/tasks/{}/answer", v.task.id)) { input type="hidden" name="csrf" value=(v.viewer.csrf); (super::form::fields(&v.task.response_schema, &v.form)) button { "Submit" } } }
}
pub fn login(v: &LoginView) -> Markup {
    html! { form method="post" action="/login" { input name="csrf" value=(v.csrf); input name="username"; input name="password"; input name="next" value=(v.next); @if let Some(e) = v.error { p { (e) } } } }
}
pub fn setup(v: &SetupView) -> Markup {
    html! { form method="post" action="/setup" { input name="csrf" value=(v.csrf); input name="token" value=(v.token); @if let Some(e) = v.error { p { (e) } } } }
}
pub fn message(title: &str, text: &str, _viewer: Option<&Viewer>) -> Markup {
    html! { h1 { (title) } p { (text) } }
}
