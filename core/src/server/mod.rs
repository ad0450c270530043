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
    /// This process's first-run setup token, while setup is open.
    setup: Arc<session::SetupToken>,
    /// Failed sign-ins, per name and per address.
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
    /// A fixed first-run setup token instead of a random one (tests).
    pub setup_token: Option<String>,
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
    let setup = Arc::new(session::SetupToken::default());
    if let Some(t) = &opts.setup_token {
        setup.set(t);
    }
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
        setup,
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

/// A running server's first-run setup link, if setup is open (no user yet): printed by
/// `inloop serve` for the first admin.
pub async fn setup_link(
    engine: &Engine,
    public_url: &str,
    token: &str,
) -> crate::Result<Option<String>> {
    Ok(crate::users::setup_open(engine)
        .await?
        .then(|| format!("{}/setup?token={token}", public_url.trim_end_matches('/'))))
}

/// Serves the API and the dashboard on `listener` until `shutdown` completes. Starts the
/// engine's background work (waker, deadline sweeper) and an hourly purge of expired
/// sessions. While setup is open, `opts.setup_token` is the token the setup link carries
/// ([`setup_link`] builds the link to print). When `shutdown` completes, new
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
    let (tx, rx) = watch::channel(false);
    let app = build(state(engine, &opts, rx, None));
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(true);
    })
    .await;
    purger.abort();
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
