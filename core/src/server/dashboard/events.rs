//! Live updates: the change feed as server-sent events, filtered by what the viewer may see.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use uuid::Uuid;

use super::request::{principal, session};
use super::respond::{error_page, message};
use crate::server::AppState;
use crate::users::Role;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::server) struct EventsParam {
    task: Option<Uuid>,
}

/// Server-sent events: `change` (data: a task id) whenever a task the viewer may see changes
/// (or, with `?task=ID`, that task), pushed from the engine's change feed (no polling). Ends
/// when the server shuts down; browsers reconnect by themselves.
pub(in crate::server) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<EventsParam>,
) -> Response {
    let s = match session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return message(
                StatusCode::UNAUTHORIZED,
                "Sign in needed",
                "Sign in first.",
                None,
            );
        }
        Err(e) => return error_page(&e, None),
    };
    let mut feed = state.engine.changes();
    let engine = state.engine.clone();
    let who = principal(&s);
    let admin = s.user.role == Role::Admin;
    let mut shutdown = state.shutdown.clone();
    let stream = async_stream(move |tx| async move {
        loop {
            let change = tokio::select! {
                c = feed.recv() => c,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let id = match change {
                Ok(c) => c.task_id,
                // Fell behind: tell the page to refresh whatever it shows.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Uuid::nil(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Some(only) = p.task
                && id != only
                && !id.is_nil()
            {
                continue;
            }
            if !admin && !id.is_nil() && engine.get_as(id, &who).await.is_err() {
                continue;
            }
            if tx
                .send(Event::default().event("change").data(id.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A stream fed by a task that sends into a small channel (ends when the task returns or the
/// client goes away).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}
