//! Structured logs for `inloop serve` (`tracing`): human-readable lines by default, one JSON
//! object per line with `INLOOP_LOG_FORMAT=json`; the filter is `INLOOP_LOG` (`info` by
//! default; any `tracing` filter such as `inloop_core=debug,sqlx=warn`).

use tracing_subscriber::EnvFilter;

/// Installs the process's log subscriber (once; a second call changes nothing). Logs go to
/// stderr so stdout keeps the server's own messages (URL, setup link).
pub fn init(filter: &str, json: bool) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    // Already installed (a test, or an embedding program): keep theirs.
    let _ = installed;
    Ok(())
}
