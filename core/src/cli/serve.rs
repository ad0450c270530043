//! `inloop serve`: the settings it starts with, and the startup it prints.

use clap::Args;

use super::{Failure, Io, fail};
use crate::engine::Engine;
use crate::server::SetupStart;
use crate::store::redact_url;

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7070]
    #[arg(long, env = "INLOOP_BIND", value_name = "ADDR")]
    bind: Option<String>,
    /// The URL people use to reach the server (links; https makes cookies Secure)
    /// [default: http://BIND]
    #[arg(long, env = "INLOOP_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

/// `inloop serve`'s settings, resolved from flags, the environment and the config file.
#[derive(Debug)]
pub(super) struct ServePlan {
    bind: String,
    public_url: Option<String>,
    log: String,
    json_logs: bool,
    channels: crate::channels::Settings,
    trusted_proxies: crate::server::hardening::TrustedProxies,
    setup_lease: std::time::Duration,
}

/// Resolves the settings; a misconfigured channel or log format stops here.
pub(super) fn plan(a: ServeArgs, file: &crate::config::FileConfig) -> Result<ServePlan, Failure> {
    let json_logs = match std::env::var("INLOOP_LOG_FORMAT")
        .ok()
        .or_else(|| file.log_format.clone())
        .as_deref()
    {
        None | Some("") | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(fail(
                "config",
                format!("log format {other:?} is not text or json"),
            ));
        }
    };
    let public_url = a.public_url.or_else(|| file.public_url.clone());
    // A misconfigured channel stops the server here, before anything is served.
    let channels = crate::channels::Settings::from_config(file, public_url.as_deref())?;
    Ok(ServePlan {
        bind: a
            .bind
            .or_else(|| file.bind.clone())
            .unwrap_or_else(|| crate::config::DEFAULT_BIND.into()),
        channels,
        trusted_proxies: crate::server::hardening::TrustedProxies::resolve(&file.trusted_proxies)?,
        public_url,
        setup_lease: setup_lease(file.setup_lease_secs)?,
        log: std::env::var("INLOOP_LOG")
            .ok()
            .or_else(|| file.log.clone())
            .unwrap_or_else(|| "info".into()),
        json_logs,
    })
}

/// The setup link's lease: `INLOOP_SETUP_LEASE_SECS`, else the file's `setup_lease_secs`, else
/// [`crate::users::SETUP_LEASE`]; 1 s to a day.
fn setup_lease(from_file: Option<u64>) -> Result<std::time::Duration, Failure> {
    let secs = match std::env::var("INLOOP_SETUP_LEASE_SECS") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            fail(
                "config",
                format!("INLOOP_SETUP_LEASE_SECS must be a whole number of seconds, not {v:?}"),
            )
        })?,
        _ => match from_file {
            Some(secs) => secs,
            None => return Ok(crate::users::SETUP_LEASE),
        },
    };
    if !(1..=86_400).contains(&secs) {
        return Err(fail(
            "config",
            format!("the setup lease must be 1 to 86400 seconds, not {secs}"),
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Serves until ctrl-c or SIGTERM.
pub(super) async fn perform(
    engine: &Engine,
    url: &str,
    plan: ServePlan,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let ServePlan {
        bind,
        public_url,
        log,
        json_logs,
        channels,
        trusted_proxies,
        setup_lease,
    } = plan;
    crate::server::logging::init(&log, json_logs)
        .map_err(|e| fail("config", format!("INLOOP_LOG {log:?}: {e}")))?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| fail("config", format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail("config", format!("cannot listen on {bind}: {e}")))?;
    let public_url = public_url
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("http://{addr}"));
    let token = crate::users::random_token();
    let holder = crate::server::replica_name(&addr.to_string());
    let setup = crate::server::claim_setup(engine, &public_url, &token, &holder).await?;
    writeln!(
        io.out,
        "inloop serve: listening on http://{addr} (database {})",
        redact_url(url)
    )?;
    writeln!(io.out, "dashboard: {public_url}/")?;
    match &setup {
        SetupStart::Link(link) => writeln!(
            io.out,
            "first run: open this link to create the admin account (works once):\n\n    {link}\n"
        )?,
        SetupStart::HeldElsewhere { holder, since, .. } => writeln!(
            io.out,
            "first run: the setup link was printed by another replica ({holder}, at {}); it works \
             here too. If that replica has stopped, this one logs a new link within {} s.",
            crate::model::format_ms(*since),
            (setup_lease * 4 / 3).as_secs_f64().ceil()
        )?,
        SetupStart::Closed => {}
    }
    io.out.flush()?;
    let configured = channels.describe();
    let channels = std::sync::Arc::new(crate::channels::Channels::new(channels)?);
    if !configured.is_empty() {
        writeln!(io.out, "channels: {}", configured.join(", "))?;
    }
    let opts = crate::server::ServerOptions {
        public_url: Some(public_url),
        // Offered even when another replica holds the link: this one takes over if that
        // one stops before setup is done.
        setup_token: (setup != SetupStart::Closed).then_some(token),
        setup_lease: Some(setup_lease),
        throttle: None,
        channels: Some(channels),
        trusted_proxies,
    };
    crate::server::serve(
        engine.clone(),
        listener,
        opts,
        crate::server::shutdown_signal(),
    )
    .await
    .map_err(|e| fail("io", format!("the server failed: {e}")))?;
    writeln!(io.out, "inloop serve: stopped")?;
    Ok(0)
}
