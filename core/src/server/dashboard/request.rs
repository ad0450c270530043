//! Who is asking: the session behind a request, its viewer and principal, the sign-in
//! redirect, and [`Posted`] (a form post checked for origin, session and CSRF token).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::respond::{error_page, message};
use crate::access::Principal;
use crate::dashboard::view::Viewer;
use crate::error::Error;
use crate::server::AppState;
use crate::server::session::{SESSION_COOKIE, cookie, csrf_ok, same_origin};
use crate::users::{self, Session};

/// Form bodies over this many bytes are refused.
const MAX_FORM_BYTES: usize = 1024 * 1024;

/// The signed-in person, if the request carries a live session.
pub(super) async fn session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, Error> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => users::session(&state.engine, token).await,
        None => Ok(None),
    }
}

pub(super) fn viewer(s: &Session) -> Viewer {
    Viewer {
        name: s.user.name.clone(),
        role: s.user.role,
        csrf: s.csrf.clone(),
    }
}

pub(super) fn principal(s: &Session) -> Principal {
    Principal::User(s.user.identity())
}

/// Where to send someone who is not signed in: the setup page while setup is open, else the
/// sign-in page (coming back to `next` afterwards).
pub(super) async fn to_sign_in(state: &AppState, next: &str) -> Response {
    if users::setup_open(&state.engine).await.unwrap_or(false) {
        return message(
            StatusCode::OK,
            "Welcome to inloop",
            "No account exists yet. Open the setup link that `inloop serve` printed when it \
             started to create the first admin.",
            None,
        );
    }
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    Redirect::to(&format!("/login?{q}")).into_response()
}

/// A local path to return to after signing in (anything else becomes the queue). Browsers
/// drop tabs and newlines from URLs and read `\\` as `/`, so `/\t/evil.example` would become
/// `//evil.example`: those are refused too.
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_whitespace() || c.is_control()) =>
        {
            n.into()
        }
        _ => "/tasks".into(),
    }
}

/// A `POST`'s form fields, with the session and CSRF checks every dashboard action needs.
pub struct Posted {
    pub session: Session,
    pub fields: Vec<(String, String)>,
}

impl Posted {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        get(&self.fields, name)
    }
}

pub(super) fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads an `application/x-www-form-urlencoded` body (at most 1 MiB).
pub(super) async fn form_fields(
    req: Request,
) -> Result<(HeaderMap, Vec<(String, String)>), Response> {
    let (parts, body) = req.into_parts();
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/x-www-form-urlencoded") {
        return Err(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported form",
            "The dashboard accepts application/x-www-form-urlencoded forms only.",
            None,
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is over the limit of 1 MiB.",
                None,
            )
        })?;
    let fields = form_urlencoded::parse(&bytes).into_owned().collect();
    Ok((parts.headers, fields))
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        if !same_origin(req.headers(), state.public_origin.as_deref()) {
            return Err(message(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form was sent from another site.",
                None,
            ));
        }
        let (headers, fields) = form_fields(req).await?;
        let session = match session(state, &headers).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(message(
                    StatusCode::UNAUTHORIZED,
                    "Your session has ended",
                    "Sign in again, then repeat what you were doing.",
                    None,
                ));
            }
            Err(e) => return Err(error_page(&e, None)),
        };
        if !csrf_ok(&session.csrf, get(&fields, "csrf")) {
            return Err(message(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form's security token is missing or stale: reload the page and try again.",
                Some(&viewer(&session)),
            ));
        }
        Ok(Posted { session, fields })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
/// `?done=...`: what the page's flash message reports (after a form post's redirect).
pub(in crate::server) struct FlashParam {
    pub(super) done: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/tasks/1?done=x")), "/tasks/1?done=x");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/tasks", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/tasks");
    }
}
