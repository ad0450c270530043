//! `inloop channels ...`: needs the configuration, never the database.

use clap::Subcommand;

use super::{Failure, Io, fail};

#[derive(Debug, Subcommand)]
pub(super) enum ChannelsCommand {
    /// Check the channel configuration (the [channels] table and INLOOP_* variables) and
    /// that each configured service is reachable; exit 1 with the problem otherwise
    Check,
    /// Print a new random webhook secret (whsec_...)
    Secret,
}

/// Runs `inloop channels check|secret`.
pub(super) fn run(
    c: &ChannelsCommand,
    file: &crate::config::FileConfig,
    public_url: Option<&str>,
    io: &mut Io,
) -> Result<i32, Failure> {
    match c {
        ChannelsCommand::Secret => {
            writeln!(io.out, "{}", crate::channels::webhook::generate_secret())?;
            Ok(0)
        }
        ChannelsCommand::Check => {
            let settings = crate::channels::Settings::from_config(file, public_url)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| fail("internal", format!("cannot start the async runtime: {e}")))?;
            let names = settings.describe();
            let lines = runtime
                .block_on(async { crate::channels::Channels::new(settings)?.check().await })?;
            if names.is_empty() {
                writeln!(io.out, "no channels configured (only the dashboard)")?;
            }
            for l in lines {
                writeln!(io.out, "ok  {l}")?;
            }
            Ok(0)
        }
    }
}
