//! The queue: the tasks a viewer may see, filtered, counted and paged.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use uuid::Uuid;

use super::request::{principal, session, to_sign_in, viewer};
use super::respond::{error_page, html};
use crate::dashboard::pages;
use crate::dashboard::view::{QueueFilter, QueueView};
use crate::error::Error;
use crate::model::{ListFilter, Status};
use crate::server::AppState;

/// A status filter from the query string: `None` is every status; absent means pending.
fn status_filter(f: &QueueFilter) -> Result<Option<Status>, Error> {
    match f.status.as_deref() {
        None | Some("") => Ok(Some(Status::Pending)),
        Some("all") => Ok(None),
        Some(s) => s.parse().map(Some),
    }
}

pub(in crate::server) async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<QueueFilter>,
    uri: axum::http::Uri,
) -> Response {
    let s = match session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(&state, &uri.to_string()).await,
        Err(e) => return error_page(&e, None),
    };
    let v = viewer(&s);
    let who = principal(&s);
    let result = async {
        let status = status_filter(&filter)?;
        let key = filter.key.clone().filter(|k| !k.trim().is_empty());
        let assignee = filter.assignee.clone().filter(|a| !a.trim().is_empty());
        let counts = state
            .engine
            .counts_as(None, key.clone(), assignee.clone(), &who)
            .await?;
        let failed_total = state
            .engine
            .failed_deliveries_as(None, key.clone(), assignee.clone(), &who)
            .await?;
        let page = state
            .engine
            .list_scoped(
                ListFilter {
                    status,
                    key_prefix: key,
                    assignee,
                    cursor: filter.cursor.clone().filter(|c| !c.is_empty()),
                    limit: Some(50),
                    ..Default::default()
                },
                &who,
                filter.failed_only(),
            )
            .await?;
        // Only for the tasks just listed, which the viewer may see.
        let ids: Vec<Uuid> = page.items.iter().map(|t| t.id).collect();
        let failed = state.engine.failed_delivery_counts(&ids).await?;
        Ok::<_, Error>((counts, page, failed, failed_total))
    }
    .await;
    match result {
        Ok((counts, page, failed, failed_total)) => html(
            StatusCode::OK,
            pages::queue(&QueueView {
                viewer: &v,
                counts: &counts,
                filter: &filter,
                tasks: &page.items,
                next_cursor: page.next_cursor.as_deref(),
                failed: &failed,
                failed_total,
            }),
        ),
        Err(e @ Error::InvalidArgument(_)) => error_page(&e, Some(&v)),
        Err(e) => error_page(&e, Some(&v)),
    }
}
