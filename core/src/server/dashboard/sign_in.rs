//! Sign-in, sign-out and first-run setup (the pages before a session).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Deserialize;

use super::request::{Posted, form_fields, get, safe_next, session, to_sign_in};
use super::respond::{error_page, html, message, see_other};
use crate::dashboard::pages;
use crate::dashboard::view::{LoginView, SetupView};
use crate::error::Error;
use crate::model::now_ms;
use crate::server::AppState;
use crate::server::session::{
    CSRF_COOKIE, SESSION_COOKIE, cookie, csrf_ok, same_origin, set_cookie,
};
use crate::users;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::server) struct NextParam {
    next: Option<String>,
}

pub(in crate::server) async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    match session(&state, &headers).await {
        Ok(Some(_)) => Redirect::to("/tasks").into_response(),
        Ok(None) => to_sign_in(&state, "/tasks").await,
        Err(e) => error_page(&e, None),
    }
}

/// A page before any session (sign-in, setup): `render` gets a fresh CSRF token, which also
/// goes into the double-submit cookie.
fn pre_session_page(
    state: &AppState,
    status: StatusCode,
    render: impl FnOnce(&str) -> Markup,
) -> Response {
    let csrf = users::random_token();
    let mut r = html(status, render(&csrf));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(CSRF_COOKIE, &csrf, None, state.secure_cookies),
    );
    r
}

/// The sign-in page.
fn login_form(
    state: &AppState,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
    next: &str,
) -> Response {
    pre_session_page(state, status, |csrf| {
        pages::login(&LoginView {
            csrf,
            username,
            error,
            next,
        })
    })
}

pub(in crate::server) async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<NextParam>,
) -> Response {
    let next = safe_next(p.next.as_deref());
    if let Ok(Some(_)) = session(&state, &headers).await {
        return Redirect::to(&next).into_response();
    }
    login_form(&state, StatusCode::OK, "", None, &next)
}

/// The peer's address (absent when the router runs without connect info, as in tests).
fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub(in crate::server) async fn login_submit(
    State(state): State<AppState>,
    req: Request,
) -> Response {
    let ip = client_ip(&req);
    if !same_origin(req.headers(), state.public_origin.as_deref()) {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site.",
            None,
        );
    }
    let (headers, fields) = match form_fields(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let username = get(&fields, "username").unwrap_or("").trim().to_string();
    let password = get(&fields, "password").unwrap_or("");
    let next = safe_next(get(&fields, "next"));
    let expected = cookie(&headers, CSRF_COOKIE).unwrap_or("");
    if !csrf_ok(expected, get(&fields, "csrf")) {
        return login_form(
            &state,
            StatusCode::FORBIDDEN,
            &username,
            Some("The sign-in form expired. Please try again."),
            &next,
        );
    }
    let store = state.engine.store();
    let wait = match state.throttle.check(store, &username, ip, now_ms()).await {
        Ok(w) => w,
        Err(e) => return error_page(&e, None),
    };
    if let Some(wait) = wait {
        let mins = wait.as_secs().div_ceil(60).max(1);
        let mut r = login_form(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &username,
            Some(&format!(
                "Too many failed sign-ins. Try again in {mins} minute{}.",
                if mins == 1 { "" } else { "s" }
            )),
            &next,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    match users::check_login(&state.engine, &username, password).await {
        Ok(user) => {
            if let Err(e) = state.throttle.succeeded(store, &username).await {
                return error_page(&e, None);
            }
            match users::start_session(&state.engine, &user).await {
                Ok((token, _)) => see_other(
                    &next,
                    &[
                        set_cookie(
                            SESSION_COOKIE,
                            &token,
                            Some(users::SESSION_MAX_MS / 1000),
                            state.secure_cookies,
                        ),
                        set_cookie(CSRF_COOKIE, "", Some(0), state.secure_cookies),
                    ],
                ),
                Err(e) => error_page(&e, None),
            }
        }
        Err(Error::Unauthorized(m)) => {
            if let Err(e) = state.throttle.failed(store, &username, ip, now_ms()).await {
                return error_page(&e, None);
            }
            tracing::info!(user = %username, "inloop: failed sign-in");
            login_form(&state, StatusCode::UNAUTHORIZED, &username, Some(&m), &next)
        }
        Err(e) => error_page(&e, None),
    }
}

pub(in crate::server) async fn logout(State(state): State<AppState>, req: Request) -> Response {
    let signed_out = |state: &AppState| {
        see_other(
            "/login",
            &[set_cookie(
                SESSION_COOKIE,
                "",
                Some(0),
                state.secure_cookies,
            )],
        )
    };
    let token = cookie(req.headers(), SESSION_COOKIE).map(str::to_string);
    // A session that already ended needs no CSRF check: there is nothing left to end.
    match session(&state, req.headers()).await {
        Ok(None) => return signed_out(&state),
        Ok(Some(_)) => {}
        Err(e) => return error_page(&e, None),
    }
    if let Err(r) = Posted::from_request(req, &state).await {
        return r;
    }
    if let Some(t) = token
        && let Err(e) = users::end_session(&state.engine, &t).await
    {
        return error_page(&e, None);
    }
    signed_out(&state)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::server) struct TokenParam {
    token: Option<String>,
}

/// The link's token is not the outstanding one (used up, withdrawn, or another's).
fn invalid_link() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "This setup link is not valid",
        "Use the link `inloop serve` printed when it started (a replica that starts while \
         another holds the link prints none; restarting the server prints a new one).",
        None,
    )
}

fn setup_closed() -> Response {
    message(
        StatusCode::GONE,
        "Setup is done",
        "This inloop already has an admin. Sign in, or ask an admin for an account \
         (`inloop user add`).",
        None,
    )
}

fn setup_form(
    state: &AppState,
    status: StatusCode,
    token: &str,
    name: &str,
    email: &str,
    error: Option<&str>,
) -> Response {
    pre_session_page(state, status, |csrf| {
        pages::setup(&SetupView {
            token,
            csrf,
            name,
            email,
            error,
        })
    })
}

pub(in crate::server) async fn setup_page(
    State(state): State<AppState>,
    Query(p): Query<TokenParam>,
) -> Response {
    match users::setup_open(&state.engine).await {
        Ok(true) => {}
        Ok(false) => return setup_closed(),
        Err(e) => return error_page(&e, None),
    }
    let token = p.token.unwrap_or_default();
    match users::setup_token_valid(&state.engine, &token).await {
        Ok(true) => {}
        Ok(false) => return invalid_link(),
        Err(e) => return error_page(&e, None),
    }
    setup_form(&state, StatusCode::OK, &token, "", "", None)
}

pub(in crate::server) async fn setup_submit(
    State(state): State<AppState>,
    req: Request,
) -> Response {
    if !same_origin(req.headers(), state.public_origin.as_deref()) {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site.",
            None,
        );
    }
    let (headers, fields) = match form_fields(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let token = get(&fields, "token").unwrap_or("");
    let name = get(&fields, "name").unwrap_or("").trim();
    let email = get(&fields, "email").unwrap_or("").trim();
    let password = get(&fields, "password").unwrap_or("");
    match users::setup_token_valid(&state.engine, token).await {
        Ok(true) => {}
        Ok(false) => {
            return match users::setup_open(&state.engine).await {
                Ok(false) => setup_closed(),
                _ => invalid_link(),
            };
        }
        Err(e) => return error_page(&e, None),
    }
    let expected = cookie(&headers, CSRF_COOKIE).unwrap_or("");
    if !csrf_ok(expected, get(&fields, "csrf")) {
        return setup_form(
            &state,
            StatusCode::FORBIDDEN,
            token,
            name,
            email,
            Some("The form expired. Please try again."),
        );
    }
    if password != get(&fields, "password2").unwrap_or("") {
        return setup_form(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            token,
            name,
            email,
            Some("The two passwords differ."),
        );
    }
    let email_opt = (!email.is_empty()).then_some(email);
    match users::complete_setup_with_token(&state.engine, token, name, email_opt, password).await {
        Ok(user) => {
            tracing::info!(user = %user.name, "inloop: setup done, first admin created");
            match users::start_session(&state.engine, &user).await {
                Ok((session_token, _)) => see_other(
                    "/tasks",
                    &[
                        set_cookie(
                            SESSION_COOKIE,
                            &session_token,
                            Some(users::SESSION_MAX_MS / 1000),
                            state.secure_cookies,
                        ),
                        set_cookie(CSRF_COOKIE, "", Some(0), state.secure_cookies),
                    ],
                ),
                Err(e) => error_page(&e, None),
            }
        }
        Err(Error::InvalidArgument(m)) => setup_form(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            token,
            name,
            email,
            Some(&m),
        ),
        // Another replica used the link first, or the token changed hands meanwhile.
        Err(Error::Forbidden(_)) => match users::setup_open(&state.engine).await {
            Ok(true) => invalid_link(),
            _ => setup_closed(),
        },
        Err(e) => error_page(&e, None),
    }
}
