//! The dashboard's HTTP side: sign-in, first-run setup, the queue, the task page and its
//! actions, live updates (server-sent events) and the static assets. Pages are rendered by
//! [`crate::dashboard::pages`]; every decision (who sees what, who may answer, whether an
//! answer is valid) is the core's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::Stream;
use maud::Markup;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::extract::TaskId;
use super::session::{CSRF_COOKIE, SESSION_COOKIE, cookie, csrf_ok, same_origin, set_cookie};
use crate::access::Principal;
use crate::dashboard::view::{
    EffectsView, Flash, FormState, LoginView, QueueFilter, QueueView, SetupView, TaskView, Viewer,
};
use crate::dashboard::{assets, form, pages};
use crate::error::Error;
use crate::model::{Answer, ListFilter, Status};
use crate::users::{self, Role, Session};

/// The channel recorded for answers, claims and cancels made in the dashboard.
pub const CHANNEL: &str = "dashboard";
/// Form bodies over this many bytes are refused.
const MAX_FORM_BYTES: usize = 1024 * 1024;

// ------------------------------------------------------------------------------------------
// Responses

/// An HTML page with the dashboard's security headers (strict CSP, no framing, no caching).
fn html(status: StatusCode, page: Markup) -> Response {
    let mut r = (status, page.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn message(status: StatusCode, title: &str, text: &str, viewer: Option<&Viewer>) -> Response {
    html(status, pages::message(title, text, viewer))
}

/// A 303 to `to` (after a form post), with extra headers (cookies).
fn see_other(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut r = Redirect::to(to).into_response();
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    r
}

/// The page for an engine error on a dashboard action.
fn error_page(e: &Error, viewer: Option<&Viewer>) -> Response {
    let status = super::error::status_for(e.code());
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

// ------------------------------------------------------------------------------------------
// Who is asking

/// The signed-in person, if the request carries a live session.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Error> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => users::session(&state.engine, token).await,
        None => Ok(None),
    }
}

fn viewer(s: &Session) -> Viewer {
    Viewer {
        name: s.user.name.clone(),
        role: s.user.role,
        csrf: s.csrf.clone(),
    }
}

fn principal(s: &Session) -> Principal {
    Principal::User(s.user.identity())
}

/// Where to send someone who is not signed in: the setup page while setup is open, else the
/// sign-in page (coming back to `next` afterwards).
async fn to_sign_in(state: &AppState, next: &str) -> Response {
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
fn safe_next(next: Option<&str>) -> String {
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
    fn get(&self, name: &str) -> Option<&str> {
        get(&self.fields, name)
    }
}

fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads an `application/x-www-form-urlencoded` body (at most 1 MiB).
async fn form_fields(req: Request) -> Result<(HeaderMap, Vec<(String, String)>), Response> {
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

// ------------------------------------------------------------------------------------------
// Sign-in, sign-out, setup

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NextParam {
    next: Option<String>,
}

pub(super) async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
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

pub(super) async fn login_page(
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

pub(super) async fn login_submit(State(state): State<AppState>, req: Request) -> Response {
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
    if let Some(wait) = state.throttle.check(&username, ip) {
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
            state.throttle.succeeded(&username);
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
            state.throttle.failed(&username, ip);
            tracing::info!(user = %username, "inloop: failed sign-in");
            login_form(&state, StatusCode::UNAUTHORIZED, &username, Some(&m), &next)
        }
        Err(e) => error_page(&e, None),
    }
}

pub(super) async fn logout(State(state): State<AppState>, req: Request) -> Response {
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
pub(super) struct TokenParam {
    token: Option<String>,
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

pub(super) async fn setup_page(
    State(state): State<AppState>,
    Query(p): Query<TokenParam>,
) -> Response {
    match users::setup_open(&state.engine).await {
        Ok(true) => {}
        Ok(false) => return setup_closed(),
        Err(e) => return error_page(&e, None),
    }
    let token = p.token.unwrap_or_default();
    if !state.setup.matches(&token) {
        return message(
            StatusCode::FORBIDDEN,
            "This setup link is not valid",
            "Use the link `inloop serve` printed when it started (restarting the server prints \
             a new one).",
            None,
        );
    }
    setup_form(&state, StatusCode::OK, &token, "", "", None)
}

pub(super) async fn setup_submit(State(state): State<AppState>, req: Request) -> Response {
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
    if !state.setup.matches(token) {
        return match users::setup_open(&state.engine).await {
            Ok(false) => setup_closed(),
            _ => message(
                StatusCode::FORBIDDEN,
                "This setup link is not valid",
                "Use the link `inloop serve` printed when it started.",
                None,
            ),
        };
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
    match users::complete_setup(&state.engine, name, email_opt, password).await {
        Ok(user) => {
            state.setup.consume();
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
        Err(Error::Forbidden(_)) => {
            state.setup.consume();
            setup_closed()
        }
        Err(e) => error_page(&e, None),
    }
}

// ------------------------------------------------------------------------------------------
// The queue and the task page

/// A status filter from the query string: `None` is every status; absent means pending.
fn status_filter(f: &QueueFilter) -> Result<Option<Status>, Error> {
    match f.status.as_deref() {
        None | Some("") => Ok(Some(Status::Pending)),
        Some("all") => Ok(None),
        Some(s) => s.parse().map(Some),
    }
}

pub(super) async fn queue(
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FlashParam {
    done: Option<String>,
}

/// The messages a redirect may ask for (a fixed set: nothing from the URL is shown).
fn flash_for(done: Option<&str>) -> Option<Flash> {
    Some(Flash::Ok(
        match done? {
            "answered" => "Answer accepted.",
            "voted" => "Your vote is recorded; the task waits for the other approvers.",
            "claimed" => "You claimed this task: others cannot answer it until you release it.",
            "released" => "Claim released.",
            "cancelled" => "Task cancelled.",
            _ => return None,
        }
        .into(),
    ))
}

async fn render_task(
    state: &AppState,
    s: &Session,
    id: Uuid,
    status: StatusCode,
    form_state: FormState<'_>,
    flash: Option<Flash>,
) -> Response {
    let v = viewer(s);
    let task = match state.engine.get_as(id, &principal(s)).await {
        Ok(t) => t,
        Err(e) => return error_page(&e, Some(&v)),
    };
    let audit = match state.engine.audit(id).await {
        Ok(a) => a,
        Err(e) => return error_page(&e, Some(&v)),
    };
    let may = match state.engine.permissions(&task, &principal(s)).await {
        Ok(p) => p,
        Err(e) => return error_page(&e, Some(&v)),
    };
    let deliveries = match state.engine.deliveries_as(id, &principal(s)).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(&v)),
    };
    html(
        status,
        pages::task(&TaskView {
            viewer: &v,
            task: &task,
            audit: &audit,
            deliveries: &deliveries,
            may,
            form: form_state,
            flash,
        }),
    )
}

pub(super) async fn task_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<TaskId, super::ApiError>,
    Query(p): Query<FlashParam>,
    uri: axum::http::Uri,
) -> Response {
    let s = match session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return to_sign_in(&state, &uri.to_string()).await,
        Err(e) => return error_page(&e, None),
    };
    let Ok(TaskId(id)) = id else {
        return error_page(&Error::NotFound("?".into()), Some(&viewer(&s)));
    };
    render_task(
        &state,
        &s,
        id,
        StatusCode::OK,
        FormState::default(),
        flash_for(p.done.as_deref()),
    )
    .await
}

pub(super) async fn answer(
    State(state): State<AppState>,
    id: Result<TaskId, super::ApiError>,
    posted: Posted,
) -> Response {
    let s = &posted.session;
    let Ok(TaskId(id)) = id else {
        return error_page(&Error::NotFound("?".into()), Some(&viewer(s)));
    };
    let task = match state.engine.get_as(id, &principal(s)).await {
        Ok(t) => t,
        Err(e) => return error_page(&e, Some(&viewer(s))),
    };
    let fields: Vec<(String, String)> = posted
        .fields
        .iter()
        .filter(|(k, _)| k.starts_with('/'))
        .cloned()
        .collect();
    let response = match form::parse(&task.response_schema, &fields) {
        Ok(v) => v,
        Err(errors) => {
            // Text that does not convert (`12x` for a number) never reaches the core; the
            // form comes back with what was typed and the field errors.
            state.metrics.answer(false);
            return render_task(
                &state,
                s,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                FormState {
                    values: None,
                    errors: &errors,
                    posted: Some(&fields),
                },
                Some(Flash::Error("Some answers need another look.".into())),
            )
            .await;
        }
    };
    let result = state
        .engine
        .answer_as(
            id,
            Answer {
                response: response.clone(),
                by: s.user.name.clone(),
                channel: CHANNEL.into(),
            },
            &principal(s),
        )
        .await;
    state.metrics.answer(result.is_ok());
    match result {
        Ok(t) if t.status == crate::model::Status::Pending => {
            see_other(&format!("/tasks/{id}?done=voted"), &[])
        }
        Ok(_) => see_other(&format!("/tasks/{id}?done=answered"), &[]),
        Err(Error::InvalidAnswer { errors }) => {
            render_task(
                &state,
                s,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                FormState {
                    values: Some(&response),
                    errors: &errors,
                    posted: Some(&fields),
                },
                Some(Flash::Error(
                    "The answer does not fit what was asked.".into(),
                )),
            )
            .await
        }
        // The verification pipeline said no (or could not decide): the reason goes to the
        // person, with the form as they filled it, and the task stays pending.
        Err(Error::VerificationRejected {
            reason,
            attempt,
            max_attempts,
            ..
        }) => {
            let left = max_attempts.saturating_sub(attempt);
            let text = format!(
                "Your answer was not accepted: {reason} ({left} attempt{} left).",
                if left == 1 { "" } else { "s" }
            );
            render_task(
                &state,
                s,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                FormState {
                    values: Some(&response),
                    errors: &[],
                    posted: Some(&fields),
                },
                Some(Flash::Error(text)),
            )
            .await
        }
        Err(e @ (Error::VerificationInconclusive { .. } | Error::VerificationPending { .. })) => {
            let status = super::error::status_for(e.code());
            render_task(
                &state,
                s,
                id,
                status,
                FormState {
                    values: Some(&response),
                    errors: &[],
                    posted: Some(&fields),
                },
                Some(Flash::Error(e.to_string())),
            )
            .await
        }
        Err(
            e
            @ (Error::Conflict { .. } | Error::Forbidden(_) | Error::VerificationExhausted { .. }),
        ) => {
            let status = super::error::status_for(e.code());
            render_task(
                &state,
                s,
                id,
                status,
                FormState::default(),
                Some(Flash::Error(e.to_string())),
            )
            .await
        }
        Err(e) => error_page(&e, Some(&viewer(s))),
    }
}

/// Claim, release or cancel: the core decides, the page reports.
async fn act(
    state: &AppState,
    id: Result<TaskId, super::ApiError>,
    posted: Posted,
    what: &'static str,
) -> Response {
    let s = &posted.session;
    let Ok(TaskId(id)) = id else {
        return error_page(&Error::NotFound("?".into()), Some(&viewer(s)));
    };
    let who = principal(s);
    let name = s.user.name.as_str();
    let result = match what {
        "claimed" => state.engine.claim(id, name, CHANNEL, &who).await,
        "released" => state.engine.release(id, name, CHANNEL, &who).await,
        _ => {
            let reason = posted
                .get("reason")
                .map(str::trim)
                .filter(|r| !r.is_empty());
            state
                .engine
                .cancel_as(id, name, CHANNEL, reason, &who)
                .await
        }
    };
    match result {
        Ok(_) => see_other(&format!("/tasks/{id}?done={what}"), &[]),
        Err(e @ (Error::Conflict { .. } | Error::Forbidden(_) | Error::InvalidArgument(_))) => {
            let status = super::error::status_for(e.code());
            render_task(
                state,
                s,
                id,
                status,
                FormState::default(),
                Some(Flash::Error(e.to_string())),
            )
            .await
        }
        Err(e) => error_page(&e, Some(&viewer(s))),
    }
}

pub(super) async fn claim(
    State(state): State<AppState>,
    id: Result<TaskId, super::ApiError>,
    posted: Posted,
) -> Response {
    act(&state, id, posted, "claimed").await
}

pub(super) async fn release(
    State(state): State<AppState>,
    id: Result<TaskId, super::ApiError>,
    posted: Posted,
) -> Response {
    act(&state, id, posted, "released").await
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    id: Result<TaskId, super::ApiError>,
    posted: Posted,
) -> Response {
    act(&state, id, posted, "cancelled").await
}

// ------------------------------------------------------------------------------------------
// Effects in doubt (admins)

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

pub(super) async fn effects_page(
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
pub(super) async fn effect_resolve(State(state): State<AppState>, posted: Posted) -> Response {
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
        ) => refused(super::error::status_for(e.code()), e.to_string()).await,
        Err(e) => error_page(&e, Some(&viewer(s))),
    }
}

// ------------------------------------------------------------------------------------------
// Live updates

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct EventsParam {
    task: Option<Uuid>,
}

/// Server-sent events: `change` (data: a task id) whenever a task the viewer may see changes
/// (or, with `?task=ID`, that task), pushed from the engine's change feed (no polling). Ends
/// when the server shuts down; browsers reconnect by themselves.
pub(super) async fn events(
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

// ------------------------------------------------------------------------------------------
// Assets

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

pub(super) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", assets::APP_CSS)
}

/// No icon: an empty answer (browsers ask for one on every site).
pub(super) async fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", assets::APP_JS)
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
