//! The pages before a session: sign-in and first-run setup.

use maud::{Markup, html};

use super::layout::{Main, layout};
use crate::dashboard::view::{LoginView, SetupView};

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
