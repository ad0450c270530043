//! The dashboard's responses: HTML with its security headers, messages, redirects and
//! error pages.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;

use crate::dashboard::pages;
use crate::dashboard::view::Viewer;
use crate::error::Error;

/// An HTML page with the dashboard's security headers (strict CSP, no framing, no caching).
pub(super) fn html(status: StatusCode, page: Markup) -> Response {
    let mut r = (status, page.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

/// The browser security headers are the router's (`hardening`); pages also must not be cached.
fn security_headers(h: &mut HeaderMap) {
    crate::server::hardening::set_security_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(super) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    viewer: Option<&Viewer>,
) -> Response {
    html(status, pages::message(title, text, viewer))
}

/// A 303 to `to` (after a form post), with extra headers (cookies).
pub(super) fn see_other(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut r = Redirect::to(to).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    r
}

/// The page for an engine error on a dashboard action.
pub(super) fn error_page(e: &Error, viewer: Option<&Viewer>) -> Response {
    let status = crate::server::error::status_for(e.code());
    let title = match e {
        Error::NotFound(_) | Error::Missing(_) => "Not found",
        Error::Forbidden(_) => "Not allowed",
        Error::Unauthorized(_) => "Sign in needed",
        Error::Database(_) | Error::Config(_) => "The database is not answering",
        _ => "Something went wrong",
    };
    let text = match e {
        Error::NotFound(_) => "There is no such task, or it is not yours to see.".to_string(),
        Error::Database(_) => "Try again in a moment.".to_string(),
        other => other.to_string(),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "inloop: dashboard request failed");
    }
    message(status, title, &text, viewer)
}
