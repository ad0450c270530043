//! Effects in doubt (admins): the page and the resolve post.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::request::{FlashParam, Posted, principal, session, to_sign_in, viewer};
use super::respond::{error_page, html, message, see_other};
use crate::dashboard::pages;
use crate::dashboard::view::{EffectsView, Flash, Viewer};
use crate::error::Error;
use crate::server::AppState;
use crate::users::{Role, Session};

/// A page that only admins have: others get a plain 404 (its existence is not advertised).
fn not_for_reviewers(v: &Viewer) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
        Some(v),
    )
}

async fn render_effects(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    flash: Option<Flash>,
    typed: Option<(&str, &str, &str, &str)>,
) -> Response {
    let v = viewer(s);
    if s.user.role != Role::Admin {
        return not_for_reviewers(&v);
    }
    match state.engine.effects_in_doubt(None, &principal(s)).await {
        Ok(list) => html(
            status,
            pages::effects(&EffectsView {
                viewer: &v,
                effects: &list,
                flash,
                typed,
            }),
        ),
        Err(e) => error_page(&e, Some(&v)),
    }
}

pub(in crate::server) async fn effects_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<FlashParam>,
    uri: axum::http::Uri,
) -> Response {
    let s = match session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(&state, &uri.to_string()).await,
        Err(e) => return error_page(&e, None),
    };
    let flash = match p.done.as_deref() {
        Some("marked_done") => Some(Flash::Ok(
            "Marked done: the agent gets the result you gave.".into(),
        )),
        Some("retry_allowed") => Some(Flash::Ok(
            "Retry allowed: the next call runs the effect again.".into(),
        )),
        _ => None,
    };
    render_effects(&state, &s, StatusCode::OK, flash, None).await
}

/// "Mark done" / "Allow retry" on an effect in doubt: the core decides (admins only; the
/// attempt shown must still be the one in doubt), the page reports.
pub(in crate::server) async fn effect_resolve(
    State(state): State<AppState>,
    posted: Posted,
) -> Response {
    use crate::effects::{Resolve, ResolveAction};
    let s = &posted.session;
    if s.user.role != Role::Admin {
        return not_for_reviewers(&viewer(s));
    }
    let ns = posted.get("namespace").unwrap_or("");
    let key = posted.get("key").unwrap_or("");
    let note = posted.get("note").unwrap_or("").trim();
    let result_text = posted.get("result").unwrap_or("").trim();
    let typed = Some((ns, key, result_text, note));
    let refused = |status: StatusCode, text: String| {
        render_effects(&state, s, status, Some(Flash::Error(text)), typed)
    };
    let attempt = match posted.get("attempt").map(str::parse::<u32>) {
        Some(Ok(a)) => Some(a),
        _ => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The form is incomplete: reload the page and try again.".into(),
            )
            .await;
        }
    };
    let (action, result) = match posted.get("action") {
        Some("allow_retry") => (ResolveAction::AllowRetry, None),
        Some("mark_done") if result_text.is_empty() => (ResolveAction::MarkDone, None),
        Some("mark_done") => match serde_json::from_str::<serde_json::Value>(result_text) {
            Ok(v) => (ResolveAction::MarkDone, Some(v)),
            Err(e) => {
                return refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("The result is not JSON ({e}). Write null when there is none."),
                )
                .await;
            }
        },
        _ => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose Mark done or Allow retry.".into(),
            )
            .await;
        }
    };
    let r = Resolve {
        action,
        result,
        attempt,
        note: (!note.is_empty()).then(|| note.to_string()),
        by: None,
    };
    match state.engine.effect_resolve(ns, key, r, &principal(s)).await {
        Ok(_) => {
            let done = match action {
                ResolveAction::MarkDone => "marked_done",
                ResolveAction::AllowRetry => "retry_allowed",
            };
            tracing::info!(namespace = %ns, key = %key, by = %s.user.name, action = done, "inloop: effect resolved");
            see_other(&format!("/effects?done={done}"), &[])
        }
        Err(
            e @ (Error::EffectConflict { .. }
            | Error::InvalidArgument(_)
            | Error::TooLarge { .. }
            | Error::Missing(_)),
        ) => refused(crate::server::error::status_for(e.code()), e.to_string()).await,
        Err(e) => error_page(&e, Some(&viewer(s))),
    }
}
