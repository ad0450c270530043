//! The command line's global options and top-level commands, and the value parsers the
//! command groups share.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::tasks::TasksCommand;
use super::{
    channels::ChannelsCommand, keys::ApikeyCommand, mcp::McpArgs, people, serve::ServeArgs,
};
use crate::model::Status;

/// Durable human-in-the-loop tasks: list, inspect, answer and cancel them from the shell.
#[derive(Debug, Parser)]
#[command(
    name = "inloop",
    version,
    propagate_version = true,
    after_help = "The database is --database-url, else $INLOOP_DATABASE_URL, else the SQLite \
                  file .inloop/inloop.db under the current directory."
)]
pub(super) struct Cli {
    /// Database URL: sqlite:PATH or postgres://USER:PASSWORD@HOST/DB
    /// [default: sqlite:.inloop/inloop.db]
    #[arg(
        long,
        global = true,
        env = "INLOOP_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(super) database_url: Option<String>,

    /// Namespace of the tasks to list or create [default: default]
    #[arg(
        long,
        global = true,
        env = "INLOOP_NAMESPACE",
        value_name = "NS",
        hide_env_values = true
    )]
    pub(super) namespace: Option<String>,

    /// Optional TOML configuration file (keys: database_url, namespace, bind, public_url,
    /// log, log_format); flags and INLOOP_* variables take precedence over it
    #[arg(long, global = true, env = "INLOOP_CONFIG", value_name = "PATH")]
    pub(super) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Create the database if needed and apply pending migrations
    Migrate,
    /// List, inspect, answer, cancel and wait for tasks
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Serve the REST API (/api/v1) until ctrl-c or SIGTERM
    Serve(ServeArgs),
    /// Create, list and revoke the API keys of the REST API
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Add, list, disable and reset the people who answer in the dashboard
    #[command(subcommand)]
    User(people::UserCommand),
    /// Set who may see and answer a namespace's unassigned tasks
    #[command(subcommand)]
    Namespace(people::NamespaceCommand),
    /// Check the notification channels (webhooks, e-mail, Slack) and make webhook secrets
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// Run the MCP server with the ask_human tool (stdio or streamable HTTP); it is part of
    /// the Python package: pip install 'inloop[mcp]'
    Mcp(McpArgs),
}

#[derive(Debug, Args)]
pub(super) struct JsonArg {
    /// Print JSON
    #[arg(long)]
    pub(super) json: bool,
}

/// Task states as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub(super) enum StatusArg {
    Pending,
    Completed,
    TimedOut,
    Cancelled,
    VerificationExhausted,
}

impl From<StatusArg> for Status {
    fn from(s: StatusArg) -> Status {
        match s {
            StatusArg::Pending => Status::Pending,
            StatusArg::Completed => Status::Completed,
            StatusArg::TimedOut => Status::TimedOut,
            StatusArg::Cancelled => Status::Cancelled,
            StatusArg::VerificationExhausted => Status::VerificationExhausted,
        }
    }
}

/// `90`, `1.5`, `500ms`, `30s`, `5m`, `2h`, `1d`: a positive duration (bare numbers are seconds).
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m, h or d, e.g. 30s or 5m)"
            ));
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30, 30s, 5m, 2h)"))?;
    match Duration::try_from_secs_f64(n * scale) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the duration must be positive".into()),
        Err(_) => Err(format!("{s:?} is out of range")),
    }
}
