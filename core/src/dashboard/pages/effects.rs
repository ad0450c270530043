//! The effects-in-doubt page (admins).

use maud::{Markup, html};

use super::layout::{Main, csrf, flash, layout, time};
use crate::dashboard::view::EffectsView;

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
