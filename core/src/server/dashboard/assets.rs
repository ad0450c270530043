//! The static assets compiled into the binary: app.css, app.js, the favicon.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::dashboard::assets;

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(in crate::server) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", assets::APP_CSS)
}

/// No icon: an empty answer (browsers ask for one on every site).
pub(in crate::server) async fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(in crate::server) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", assets::APP_JS)
}
