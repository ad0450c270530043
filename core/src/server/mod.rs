//! The REST server (`inloop serve`): the contract is `docs/api.md`.
//!
//! Every route is listed once, in [`ROUTES`]; the router is built from that table and the
//! OpenAPI document ([`ApiDoc`], served at `/api/v1/openapi.json`) is generated from the
//! handlers' annotations, and a test checks the two agree.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::MethodRouter;
use tokio::sync::watch;

use crate::engine::Engine;

mod dashboard;
mod email_links;
pub mod error;
pub mod extract;
pub mod hardening;
pub mod listen;
pub mod logging;
pub mod metrics;
mod openapi;
mod routes;
pub mod session;
mod slack_events;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::Metrics;
pub use routes::ApiDoc;

/// Request bodies over this many bytes are refused (`413 too_large`) before parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The default and the largest `timeout_ms` of a long poll.
pub const WAIT_DEFAULT_MS: u64 = 25_000;
pub const WAIT_MAX_MS: u64 = 60_000;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    /// This process's counters, served at `/metrics`.
    metrics: Arc<Metrics>,
    /// Becomes `true` when the server begins to shut down: long polls return at once.
    shutdown: watch::Receiver<bool>,
    /// Keeps the channel open when nobody else owns the sender ([`router`]).
    _sender: Option<Arc<watch::Sender<bool>>>,
    /// Failed sign-ins, per name and per address (counted in the database).
    throttle: Arc<session::LoginThrottle>,
    /// Mark cookies `Secure` (the public URL is https).
    secure_cookies: bool,
    /// The public URL's origin, accepted as a form's `Origin` besides the `Host`.
    public_origin: Option<Arc<str>>,
    /// The notification channels (the e-mail link pages need the link keys).
    channels: Option<Arc<crate::channels::Channels>>,
    /// Security headers and `Secure` cookies on every response ([`hardening`]).
    hardening: Arc<hardening::Hardening>,
}

/// How the server presents itself.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The URL people use to reach the dashboard (links, the setup link); https makes the
    /// session cookie `Secure`.
    pub public_url: Option<String>,
    /// The first-run setup token this replica offers while setup is open ([`serve`] claims
    /// it in the database: it becomes the one outstanding token unless another replica's
    /// claim is running, and then takes over when that claim lapses). `None`: this replica
    /// mints none (it still accepts the outstanding one, whoever minted it).
    pub setup_token: Option<String>,
    /// How long a claim on the setup token lasts without renewal (default
    /// [`crate::users::SETUP_LEASE`]; renewed every third of it).
    pub setup_lease: Option<std::time::Duration>,
    /// Sign-in throttling (default: 5 failures per name, 20 per address, in 15 minutes).
    pub throttle: Option<(std::time::Duration, usize, usize)>,
    /// The notification channels: [`serve`] runs an outbox dispatcher for them. With them,
    /// the API refuses at creation a `callback_url` their `[callbacks]` allow-list does not
    /// permit; without them (embedding, tests) only the URL's form is checked.
    pub channels: Option<Arc<crate::channels::Channels>>,
    /// Reverse proxies whose `X-Forwarded-Proto: https` makes cookies `Secure` and whose
    /// `X-Forwarded-For` names the client (sign-in throttling); nobody else's is believed.
    pub trusted_proxies: hardening::TrustedProxies,
}

/// One route: method, path (axum/OpenAPI syntax) and its handler.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    make: fn() -> MethodRouter<AppState>,
}

/// Every route the server serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/api/v1/tasks",
        make: || axum::routing::post(routes::create_task),
    },
    Route {
        method: "GET",
        path: "/api/v1/tasks",
        make: || axum::routing::get(routes::list_tasks),
    },
    Route {
        method: "GET",
        path: "/api/v1/tasks/{id}",
        make: || axum::routing::get(routes::get_task),
    },
    Route {
        method: "GET",
        path: "/api/v1/tasks/by-key/{key}",
        make: || axum::routing::get(routes::get_task_by_key),
    },
    Route {
        method: "POST",
        path: "/api/v1/tasks/{id}/answer",
        make: || axum::routing::post(routes::answer_task),
    },
    Route {
        method: "POST",
        path: "/api/v1/tasks/{id}/cancel",
        make: || axum::routing::post(routes::cancel_task),
    },
    Route {
        method: "POST",
        path: "/api/v1/tasks/{id}/verdict",
        make: || axum::routing::post(routes::verdict_task),
    },
    Route {
        method: "POST",
        path: "/api/v1/tasks/{id}/claim",
        make: || axum::routing::post(routes::claim_task),
    },
    Route {
        method: "POST",
        path: "/api/v1/tasks/{id}/release",
        make: || axum::routing::post(routes::release_task),
    },
    Route {
        method: "GET",
        path: "/api/v1/tasks/{id}/audit",
        make: || axum::routing::get(routes::task_audit),
    },
    Route {
        method: "GET",
        path: "/api/v1/tasks/{id}/wait",
        make: || axum::routing::get(routes::wait_task),
    },
    Route {
        method: "GET",
        path: "/api/v1/effects",
        make: || axum::routing::get(routes::list_effects),
    },
    Route {
        method: "GET",
        path: "/api/v1/effects/{key}",
        make: || axum::routing::get(routes::get_effect),
    },
    Route {
        method: "POST",
        path: "/api/v1/effects/{key}/begin",
        make: || axum::routing::post(routes::begin_effect),
    },
    Route {
        method: "POST",
        path: "/api/v1/effects/{key}/finish",
        make: || axum::routing::post(routes::finish_effect),
    },
    Route {
        method: "POST",
        path: "/api/v1/effects/{key}/abort",
        make: || axum::routing::post(routes::abort_effect),
    },
    Route {
        method: "POST",
        path: "/api/v1/effects/{key}/resolve",
        make: || axum::routing::post(routes::resolve_effect),
    },
    Route {
        method: "GET",
        path: "/api/v1/effects/{key}/audit",
        make: || axum::routing::get(routes::effect_audit),
    },
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        make: || axum::routing::get(routes::openapi),
    },
    Route {
        method: "GET",
        path: "/metrics",
        make: || axum::routing::get(routes::metrics),
    },
    Route {
        method: "GET",
        path: "/healthz",
        make: || axum::routing::get(routes::healthz),
    },
    Route {
        method: "GET",
        path: "/readyz",
        make: || axum::routing::get(routes::readyz),
    },
];

/// The dashboard's pages and actions (HTML, not part of the REST API or its OpenAPI document).
pub const DASHBOARD_ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/email/{token}",
        make: || axum::routing::get(email_links::page).post(email_links::submit),
    },
    Route {
        method: "POST",
        path: "/slack/interactivity",
        make: || axum::routing::post(slack_events::interactivity),
    },
    Route {
        method: "GET",
        path: "/",
        make: || axum::routing::get(dashboard::index),
    },
    Route {
        method: "GET",
        path: "/login",
        make: || axum::routing::get(dashboard::login_page).post(dashboard::login_submit),
    },
    Route {
        method: "POST",
        path: "/logout",
        make: || axum::routing::post(dashboard::logout),
    },
    Route {
        method: "GET",
        path: "/setup",
        make: || axum::routing::get(dashboard::setup_page).post(dashboard::setup_submit),
    },
    Route {
        method: "GET",
        path: "/tasks",
        make: || axum::routing::get(dashboard::queue),
    },
    Route {
        method: "GET",
        path: "/tasks/{id}",
        make: || axum::routing::get(dashboard::task_page),
    },
    Route {
        method: "POST",
        path: "/tasks/{id}/answer",
        make: || axum::routing::post(dashboard::answer),
    },
    Route {
        method: "POST",
        path: "/tasks/{id}/claim",
        make: || axum::routing::post(dashboard::claim),
    },
    Route {
        method: "POST",
        path: "/tasks/{id}/release",
        make: || axum::routing::post(dashboard::release),
    },
    Route {
        method: "POST",
        path: "/tasks/{id}/cancel",
        make: || axum::routing::post(dashboard::cancel),
    },
    Route {
        method: "GET",
        path: "/effects",
        make: || axum::routing::get(dashboard::effects_page),
    },
    Route {
        method: "POST",
        path: "/effects/resolve",
        make: || axum::routing::post(dashboard::effect_resolve),
    },
    Route {
        method: "GET",
        path: "/events",
        make: || axum::routing::get(dashboard::events),
    },
    Route {
        method: "GET",
        path: "/static/app.css",
        make: || axum::routing::get(dashboard::app_css),
    },
    Route {
        method: "GET",
        path: "/static/app.js",
        make: || axum::routing::get(dashboard::app_js),
    },
    Route {
        method: "GET",
        path: "/favicon.ico",
        make: || axum::routing::get(dashboard::favicon),
    },
];

fn build(state: AppState) -> Router {
    let mut router = Router::new();
    for r in ROUTES.iter().chain(DASHBOARD_ROUTES) {
        // Each route labels its responses with its template, for the metrics layer.
        let label = metrics::RouteLabel(r.path);
        let tag = axum::middleware::map_response(move |mut res: Response| async move {
            res.extensions_mut().insert(label);
            res
        });
        router = router.route(r.path, (r.make)().layer(tag));
    }
    router
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.hardening),
            hardening::harden,
        ))
        .with_state(state)
}

fn state(
    engine: Engine,
    opts: &ServerOptions,
    shutdown: watch::Receiver<bool>,
    sender: Option<Arc<watch::Sender<bool>>>,
) -> AppState {
    // With channels, this server knows which callback URLs it delivers to: its API refuses
    // the others at creation (none at all when callbacks are not configured).
    let engine = match &opts.channels {
        Some(ch) => engine.with_callback_allow(ch.callback_allow()),
        None => engine,
    };
    let throttle = match opts.throttle {
        Some((window, per_login, per_address)) => {
            session::LoginThrottle::new(window, per_login, per_address)
        }
        None => session::LoginThrottle::default(),
    };
    let secure_cookies = opts
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    AppState {
        hardening: Arc::new(hardening::Hardening {
            proxies: opts.trusted_proxies.clone(),
            always_secure: secure_cookies,
        }),
        engine,
        metrics: Arc::default(),
        shutdown,
        _sender: sender,
        throttle: Arc::new(throttle),
        secure_cookies,
        public_origin: opts
            .public_url
            .as_deref()
            .and_then(session::origin_of)
            .map(Arc::from),
        channels: opts.channels.clone(),
    }
}

/// The router on `engine`, without shutdown handling (for tests and embedding).
pub fn router(engine: Engine) -> Router {
    router_with(engine, &ServerOptions::default())
}

/// [`router`] with options.
pub fn router_with(engine: Engine, opts: &ServerOptions) -> Router {
    let (tx, rx) = watch::channel(false);
    build(state(engine, opts, rx, Some(Arc::new(tx))))
}

/// What a replica can say about first-run setup when it starts ([`claim_setup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupStart {
    /// A user exists: setup is done, there is no link.
    Closed,
    /// This replica's token is the outstanding one: print this link (it works once, on any
    /// replica).
    Link(String),
    /// Another replica holds the outstanding token (its link, printed when it started, works
    /// here too); this replica takes over, with a new link in its log, if that claim lapses
    /// (`until`, ms) without renewal.
    HeldElsewhere {
        holder: String,
        since: i64,
        until: i64,
    },
}

/// Claims `token` as the cluster's one outstanding setup token for this replica (`holder`)
/// while setup is open, and says what to print: the link, or who holds it. `inloop serve`
/// calls it before [`serve`], which keeps the claim alive.
///
/// ```no_run
/// # async fn f(engine: &inloop_core::Engine) -> inloop_core::Result<()> {
/// use inloop_core::server::{SetupStart, claim_setup};
/// let token = inloop_core::users::random_token();
/// let holder = inloop_core::server::replica_name("127.0.0.1:7070");
/// if let SetupStart::Link(link) = claim_setup(engine, "http://127.0.0.1:7070", &token, &holder).await? {
///     println!("first run: {link}");
/// }
/// # Ok(()) }
/// ```
pub async fn claim_setup(
    engine: &Engine,
    public_url: &str,
    token: &str,
    holder: &str,
) -> crate::Result<SetupStart> {
    if !crate::users::setup_open(engine).await? {
        return Ok(SetupStart::Closed);
    }
    if crate::users::claim_setup_token(engine, token, holder, crate::users::SETUP_LEASE).await? {
        return Ok(SetupStart::Link(setup_url(public_url, token)));
    }
    Ok(match crate::users::setup_token_holder(engine).await? {
        Some((holder, since, until)) => SetupStart::HeldElsewhere {
            holder,
            since,
            until,
        },
        // Setup closed (or the holder released) between the two reads.
        None if crate::users::setup_open(engine).await? => SetupStart::HeldElsewhere {
            holder: "another replica".into(),
            since: crate::model::now_ms(),
            until: crate::model::now_ms(),
        },
        None => SetupStart::Closed,
    })
}

fn setup_url(public_url: &str, token: &str) -> String {
    format!("{}/setup?token={token}", public_url.trim_end_matches('/'))
}

/// How a replica names itself as the holder of the setup token: its process id and the
/// address it listens on.
pub fn replica_name(addr: &str) -> String {
    format!("pid {} on {addr}", std::process::id())
}

/// Keeps this replica's claim on the setup token alive while setup is open, and takes over
/// (logging the new link) when another replica's claim lapses.
async fn keep_setup_token(
    engine: Engine,
    token: String,
    holder: String,
    lease: std::time::Duration,
    public_url: Option<String>,
    mut holding: Option<bool>,
) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match crate::users::setup_open(&engine).await {
            Ok(false) => return,
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "inloop: cannot read the setup state"),
        }
        match crate::users::claim_setup_token(&engine, &token, &holder, lease).await {
            Ok(now_holding) => {
                // Taken over after start (`inloop serve` printed the first claim's link).
                if now_holding && holding != Some(true) {
                    let link = setup_url(public_url.as_deref().unwrap_or(""), &token);
                    tracing::warn!(
                        link = %link,
                        "inloop: first run: the replica holding the setup link stopped; this \
                         one holds it now: open the link to create the admin account (works once)"
                    );
                }
                if !now_holding && holding == Some(true) {
                    tracing::info!("inloop: the setup link is no longer this replica's");
                }
                holding = Some(now_holding);
            }
            Err(e) => tracing::warn!(error = %e, "inloop: cannot renew the setup token"),
        }
    }
}

/// Deletes the shared state that has expired at `now` (ms): Slack replay entries past their
/// ten minutes, sign-in failures past their window. Returns how many rows went. [`serve`]
/// runs it every minute.
///
/// ```no_run
/// # async fn f(engine: &inloop_core::Engine) -> inloop_core::Result<()> {
/// let gone = inloop_core::server::purge_expired_state(engine, inloop_core::model::now_ms()).await?;
/// println!("{gone} expired rows deleted");
/// # Ok(()) }
/// ```
pub async fn purge_expired_state(engine: &Engine, now: i64) -> crate::Result<u64> {
    engine.store().purge_cluster_state(now).await
}

async fn purge_cluster_state(engine: Engine) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(e) = purge_expired_state(&engine, crate::model::now_ms()).await {
            tracing::warn!(error = %e, "inloop: cannot purge expired replay and sign-in rows");
        }
    }
}

/// Serves the API and the dashboard on `listener` until `shutdown` completes. Starts the
/// engine's background work (waker, deadline sweeper), an hourly purge of expired
/// sessions and a per-minute purge of expired replay and sign-in rows. While setup is open,
/// `opts.setup_token` is claimed as the cluster's setup token and kept alive ([`claim_setup`]
/// says what to print); it is withdrawn when the server stops. When `shutdown` completes, new
/// connections are refused, open long polls return `503 unavailable` at once (clients retry),
/// live-update streams end, and the call returns when the requests in flight have finished.
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    engine.start_background();
    // Expired and idle sessions are deleted hourly (lookups refuse them anyway).
    let purger = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = crate::users::purge_sessions(&engine).await {
                    tracing::warn!(error = %e, "inloop: cannot purge expired sessions");
                }
            }
        })
    };
    let dispatcher = opts.channels.as_ref().map(|ch| {
        let worker = format!("serve-{}", std::process::id());
        crate::channels::spawn_dispatcher(engine.clone(), Arc::clone(ch), worker)
    });
    let _stop_dispatcher = AbortOnDrop(dispatcher);
    let _stop_purge = AbortOnDrop(Some(tokio::spawn(purge_cluster_state(engine.clone()))));
    let holder = replica_name(
        &listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    );
    let lease = opts.setup_lease.unwrap_or(crate::users::SETUP_LEASE);
    let keeper = match opts.setup_token.clone() {
        Some(token) => {
            // Claimed before the first connection: the link works as soon as `serve` runs.
            let holding =
                match crate::users::claim_setup_token(&engine, &token, &holder, lease).await {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "inloop: cannot claim the setup token");
                        None
                    }
                };
            Some(tokio::spawn(keep_setup_token(
                engine.clone(),
                token,
                holder,
                lease,
                opts.public_url.clone(),
                holding,
            )))
        }
        None => None,
    };
    let _stop_keeper = AbortOnDrop(keeper);
    let (tx, rx) = watch::channel(false);
    let app = build(state(engine.clone(), &opts, rx, None));
    let result = listen::run(listener, app, async move {
        shutdown.await;
        let _ = tx.send(true);
    })
    .await;
    purger.abort();
    drop(_stop_keeper);
    if let Some(token) = &opts.setup_token
        && let Err(e) = crate::users::release_setup_token(&engine, token).await
    {
        tracing::warn!(error = %e, "inloop: cannot withdraw the setup token");
    }
    result
}

/// Stops a background task when dropped (the dispatcher ends with the server).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// Completes once `ctrl-c` or (on Unix) `SIGTERM` arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
