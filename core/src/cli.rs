//! The `inloop` command line.
//!
//! [`main_with_args`] is the whole program: the `inloop` binary calls it with the process's
//! arguments, and the Python package's `inloop` console script calls it through the native
//! module. It assumes nothing about the process beyond its arguments, environment, stdin,
//! stdout and stderr: it parses the arguments, runs one command on a tokio runtime of its own
//! and returns the exit code (0 success, 1 failure, 2 usage error).
//!
//! ```text
//! inloop [--database-url URL] [--namespace NS] migrate
//! inloop tasks list [--status S] [--key-prefix P] [--limit N] [--cursor C] [--all-namespaces] [--json]
//! inloop tasks show ID [--json]
//! inloop tasks answer ID [RESPONSE | -] [--file PATH] [--by WHO] [--json]
//! inloop tasks cancel ID [--reason R] [--by WHO] [--json]
//! inloop tasks audit ID [--json]
//! inloop tasks wait ID [--timeout DURATION] [--json]
//! inloop tasks create --title T --response-schema JSON [--payload JSON] [--key K] ... [--json]
//! inloop serve [--bind ADDR]
//! inloop apikey create --name NAME [--namespace NS] [--allow-answer] [--json]
//! inloop apikey list [--json]
//! inloop apikey revoke ID [--json]
//! inloop user add NAME [--role admin|reviewer] [--email E] [--group G ...] [--password-stdin] [--json]
//! inloop user list|disable|enable NAME|reset-password NAME [--password-stdin]
//! inloop user groups NAME [GROUP ...]
//! inloop namespace set NS --unassigned reviewers|admins
//! inloop namespace list [--json]
//! ```
//!
//! Errors go to stderr as `error [<code>]: <message>`, where the code is the engine's stable
//! [`Error::code`], or one of the CLI's own: `invalid_json` (an answer or option that is not
//! JSON), `still_pending` (`tasks wait --timeout` ran out), `audit_broken` (`tasks audit`
//! found an altered chain), `io` (the output could not be written).

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use uuid::Uuid;

mod people;

/// `inloop channels ...`: needs the configuration, never the database.
fn channels_command(
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

use crate::apikeys::{self, ApiKey};
use crate::audit;
use crate::config::resolve_database_url;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, FieldError};
use crate::model::{
    Answer, AuditEvent, ListFilter, NewTask, Page, Status, Task, format_ms, now_ms,
};
use crate::rules;
use crate::schema::canonical_json;
use crate::store::redact_url;

/// The channel recorded for answers and cancels made here.
const CHANNEL: &str = "cli";
/// The largest JSON document read from stdin or a file.
const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// Runs the `inloop` command line with `args` (including the program name, `argv[0]`) and
/// returns the process exit code: 0 on success (and for `--help` / `--version`), 1 when the
/// command failed (the error is printed to stderr as `error [<code>]: <message>`), 2 for a
/// usage error (clap prints the usage).
///
/// It builds its own single-threaded tokio runtime, so it must not be called from a thread
/// that is inside one; if it is, the command runs on a fresh thread instead.
pub fn main_with_args(args: Vec<String>) -> i32 {
    if tokio::runtime::Handle::try_current().is_ok() {
        // A runtime cannot be started from within another: run on a thread of our own.
        return std::thread::spawn(move || main_with_args(args))
            .join()
            .unwrap_or(1);
    }
    let stdin = io::stdin();
    let mut stdin_lock = stdin.lock();
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mut io = Io {
        stdin_is_terminal: io::stdin().is_terminal(),
        out_color: !no_color && io::stdout().is_terminal(),
        err_color: !no_color && io::stderr().is_terminal(),
        stdin: &mut stdin_lock,
        out: &mut stdout,
        err: &mut stderr,
    };
    let code = run(args, &mut io);
    let _ = io.out.flush();
    let _ = io.err.flush();
    code
}

// ------------------------------------------------------------------------------------------
// Arguments
// ------------------------------------------------------------------------------------------

/// Durable human-in-the-loop tasks: list, inspect, answer and cancel them from the shell.
#[derive(Debug, Parser)]
#[command(
    name = "inloop",
    version,
    propagate_version = true,
    after_help = "The database is --database-url, else $INLOOP_DATABASE_URL, else the SQLite \
                  file .inloop/inloop.db under the current directory."
)]
struct Cli {
    /// Database URL: sqlite:PATH or postgres://USER:PASSWORD@HOST/DB
    /// [default: sqlite:.inloop/inloop.db]
    #[arg(
        long,
        global = true,
        env = "INLOOP_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Namespace of the tasks to list or create [default: default]
    #[arg(
        long,
        global = true,
        env = "INLOOP_NAMESPACE",
        value_name = "NS",
        hide_env_values = true
    )]
    namespace: Option<String>,

    /// Optional TOML configuration file (keys: database_url, namespace, bind, public_url,
    /// log, log_format); flags and INLOOP_* variables take precedence over it
    #[arg(long, global = true, env = "INLOOP_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Check the channel configuration (the [channels] table and INLOOP_* variables) and
    /// that each configured service is reachable; exit 1 with the problem otherwise
    Check,
    /// Print a new random webhook secret (whsec_...)
    Secret,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7070]
    #[arg(long, env = "INLOOP_BIND", value_name = "ADDR")]
    bind: Option<String>,
    /// The URL people use to reach the server (links; https makes cookies Secure)
    /// [default: http://BIND]
    #[arg(long, env = "INLOOP_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ApikeyCommand {
    /// Create a key for --namespace (the key is printed once, never again)
    Create(ApikeyCreateArgs),
    /// List the keys (id, name, namespace, created, last used, revoked)
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Revoke a key: requests with it are refused from now on
    Revoke(ApikeyRevokeArgs),
}

#[derive(Debug, Args)]
struct ApikeyCreateArgs {
    /// Who or what uses the key (shown by `apikey list`)
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Let the key answer tasks (an agent's key should not: it must not approve its own
    /// requests)
    #[arg(long)]
    allow_answer: bool,
    /// Print the key and its record as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JsonArg {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ApikeyRevokeArgs {
    /// The key's id (from `apikey list`)
    #[arg(value_name = "ID")]
    id: String,
    /// Print the revoked key as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum TasksCommand {
    /// List tasks, newest first
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one task: its request, payload, expected answer and outcome
    Show(IdArgs),
    /// Answer a pending task (the answer is JSON, checked against the task's response schema)
    Answer(AnswerArgs),
    /// Cancel a pending task
    Cancel(CancelArgs),
    /// Show a task's audit trail and verify its hash chain (exit 1 when broken)
    Audit(IdArgs),
    /// Wait until a task ends, then print it (exit 0 only when it was answered)
    Wait(WaitArgs),
    /// Create a task (or get the one its key already names)
    Create(Box<CreateArgs>),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only tasks in this state
    #[arg(long, value_name = "STATUS")]
    status: Option<StatusArg>,
    /// Only tasks whose key starts with this
    #[arg(long, value_name = "PREFIX")]
    key_prefix: Option<String>,
    /// Page size
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Continue after the previous page (its next cursor)
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,
    /// List every namespace, not only --namespace
    #[arg(long)]
    all_namespaces: bool,
    /// Print the page as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IdArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AnswerArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// The answer as JSON text, e.g. '{"approved": true}'; `-` or nothing (without --file)
    /// reads it from stdin
    #[arg(
        value_name = "RESPONSE",
        allow_negative_numbers = true,
        conflicts_with = "file"
    )]
    response: Option<String>,
    /// Read the answer from this JSON file
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,
    /// Who answers [default: $USER, else "cli"]
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Print the answered task as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CancelArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Why the task is cancelled
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Who cancels [default: $USER, else "cli"]
    #[arg(long, value_name = "WHO")]
    by: Option<String>,
    /// Print the cancelled task as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct WaitArgs {
    /// The task id (or use --key)
    #[arg(value_name = "ID", required_unless_present = "key")]
    id: Option<String>,
    /// Name the task by its idempotency key (in --namespace) instead of its id
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Give up after this long: seconds, or a number with ms, s, m, h or d [default: no limit]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Print the task as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// What the person is asked
    #[arg(long, value_name = "TEXT")]
    title: String,
    /// JSON Schema of the answer: JSON text, @PATH, or @- for stdin
    #[arg(long, value_name = "JSON")]
    response_schema: String,
    /// The request's data: JSON text, @PATH, or @- for stdin [default: {}]
    #[arg(long, value_name = "JSON")]
    payload: Option<String>,
    /// JSON Schema the payload must match: JSON text, @PATH, or @- for stdin
    #[arg(long, value_name = "JSON")]
    payload_schema: Option<String>,
    /// Idempotency key: the same key gives the same task [default: a new task each time]
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Time allowed for an answer: seconds, or a number with ms, s, m, h or d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Where to deliver the request, as CHANNEL:TARGET (repeatable)
    #[arg(long, value_name = "CHANNEL:TARGET")]
    notify: Vec<String>,
    /// Who may answer (repeatable) [default: anyone]
    #[arg(long, value_name = "WHO")]
    assign_to: Vec<String>,
    /// Who asks (recorded in the audit trail; `exclude_requester` keeps them from answering)
    #[arg(long, value_name = "WHO")]
    requested_by: Option<String>,
    /// An http(s) URL that receives the task's end (a signed task.ended event), if the
    /// server's [callbacks] allow-list permits it
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// Approval policy (approvers, reminders_ms, escalate, on_timeout; docs/policies.md):
    /// JSON text, @PATH, or @- for stdin
    #[arg(long, value_name = "JSON")]
    policy: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

/// Task states as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum StatusArg {
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
fn parse_duration(s: &str) -> Result<Duration, String> {
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

// ------------------------------------------------------------------------------------------
// Running
// ------------------------------------------------------------------------------------------

/// Where a run reads and writes; real stdio in [`main_with_args`], buffers in tests.
struct Io<'a> {
    stdin: &'a mut dyn Read,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    stdin_is_terminal: bool,
    out_color: bool,
    err_color: bool,
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// The engine refused or failed; an optional hint follows the error line.
    Engine(Box<Error>, Option<String>),
    /// The CLI itself found a problem (bad id, bad JSON, unreadable file).
    Cli {
        code: &'static str,
        message: String,
        hint: Option<String>,
    },
    /// Writing the output failed.
    Output(io::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(Box::new(e), None)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

fn fail(code: &'static str, message: impl Into<String>) -> Failure {
    Failure::Cli {
        code,
        message: message.into(),
        hint: None,
    }
}

/// One command, its arguments checked and its input read, ready to run against the database.
#[derive(Debug)]
enum Plan {
    Migrate,
    List {
        filter: ListFilter,
        json: bool,
    },
    Show {
        task: TaskRef,
        json: bool,
    },
    Answer {
        task: TaskRef,
        response: Value,
        by: String,
        json: bool,
    },
    Cancel {
        task: TaskRef,
        reason: Option<String>,
        by: String,
        json: bool,
    },
    Audit {
        task: TaskRef,
        json: bool,
    },
    Wait {
        task: TaskRef,
        timeout: Option<Duration>,
        json: bool,
    },
    Create {
        new: Box<NewTask>,
        /// The configured callback allow-list, when there is one: refused early here.
        callback_allow: Option<crate::channels::callback::AllowList>,
        json: bool,
    },
    Serve {
        bind: String,
        public_url: Option<String>,
        log: String,
        json_logs: bool,
        channels: Box<crate::channels::Settings>,
    },
    ApikeyCreate {
        name: String,
        namespace: String,
        allow_answer: bool,
        json: bool,
    },
    ApikeyList {
        json: bool,
    },
    ApikeyRevoke {
        id: Uuid,
        json: bool,
    },
    People(people::PeoplePlan),
}

impl Plan {
    /// Whether the command may create the database (the others need an existing one).
    fn creates_database(&self) -> bool {
        matches!(
            self,
            Plan::Migrate | Plan::Create { .. } | Plan::Serve { .. } | Plan::ApikeyCreate { .. }
        ) || matches!(self, Plan::People(p) if p.creates_database())
    }
}

fn run(args: Vec<String>, io: &mut Io) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let (stream, color) = if e.use_stderr() {
                (&mut *io.err, io.err_color)
            } else {
                (&mut *io.out, io.out_color)
            };
            let rendered = e.render();
            let _ = if color {
                write!(stream, "{}", rendered.ansi())
            } else {
                write!(stream, "{rendered}")
            };
            return e.exit_code();
        }
    };
    match execute(cli, io) {
        Ok(code) => code,
        Err(failure) => report(failure, io),
    }
}

fn execute(cli: Cli, io: &mut Io) -> Result<i32, Failure> {
    let file = match &cli.config {
        Some(path) => crate::config::FileConfig::load(path)?,
        None => Default::default(),
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    // An empty INLOOP_NAMESPACE means the default, as an empty INLOOP_DATABASE_URL does.
    let namespace = nonempty(cli.namespace)
        .or_else(|| nonempty(file.namespace.clone()))
        .unwrap_or_else(|| "default".into());
    if let Command::Channels(c) = &cli.command {
        let public_url = std::env::var("INLOOP_PUBLIC_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| file.public_url.clone());
        return channels_command(c, &file, public_url.as_deref(), io);
    }
    let plan = plan(cli.command, &namespace, &file, io)?;
    let database_url = nonempty(cli.database_url).or(file.database_url);
    let url = resolve_database_url(database_url.as_deref())?;
    if !plan.creates_database() {
        check_sqlite_exists(&url)?;
    }
    // The server needs every core; one command needs one thread.
    let runtime = if matches!(plan, Plan::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| fail("internal", format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let engine = Engine::open(&url, EngineOptions::default()).await?;
        let result = perform(&engine, &url, plan, io).await;
        engine.close().await;
        result
    })
}

/// Checks the arguments and reads any input, before the database is touched.
fn plan(
    command: Command,
    namespace: &str,
    file: &crate::config::FileConfig,
    io: &mut Io,
) -> Result<Plan, Failure> {
    let tasks = match command {
        Command::Migrate => return Ok(Plan::Migrate),
        Command::Tasks(t) => t,
        Command::Serve(a) => {
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
            return Ok(Plan::Serve {
                bind: a
                    .bind
                    .or_else(|| file.bind.clone())
                    .unwrap_or_else(|| crate::config::DEFAULT_BIND.into()),
                channels: Box::new(channels),
                public_url,
                log: std::env::var("INLOOP_LOG")
                    .ok()
                    .or_else(|| file.log.clone())
                    .unwrap_or_else(|| "info".into()),
                json_logs,
            });
        }
        Command::Apikey(ApikeyCommand::Create(a)) => {
            return Ok(Plan::ApikeyCreate {
                name: a.name,
                namespace: namespace.to_string(),
                allow_answer: a.allow_answer,
                json: a.json,
            });
        }
        Command::Apikey(ApikeyCommand::List(a)) => return Ok(Plan::ApikeyList { json: a.json }),
        Command::User(u) => return Ok(Plan::People(people::plan_user(u, io)?)),
        Command::Namespace(n) => return Ok(Plan::People(people::plan_namespace(n))),
        Command::Channels(_) => unreachable!("`inloop channels` is run before planning"),
        Command::Apikey(ApikeyCommand::Revoke(a)) => {
            let id = Uuid::parse_str(a.id.trim()).map_err(|_| {
                fail(
                    "invalid_argument",
                    format!(
                        "{:?} is not an API key id (a UUID, see `inloop apikey list`)",
                        a.id
                    ),
                )
            })?;
            return Ok(Plan::ApikeyRevoke { id, json: a.json });
        }
    };
    Ok(match tasks {
        TasksCommand::List(a) => Plan::List {
            filter: ListFilter {
                namespace: (!a.all_namespaces).then(|| namespace.to_string()),
                status: a.status.map(Status::from),
                key_prefix: a.key_prefix,
                limit: Some(a.limit),
                cursor: a.cursor,
                ..ListFilter::default()
            },
            json: a.json,
        },
        TasksCommand::Show(a) => Plan::Show {
            task: task_ref(a.id, a.key, namespace)?,
            json: a.json,
        },
        TasksCommand::Audit(a) => Plan::Audit {
            task: task_ref(a.id, a.key, namespace)?,
            json: a.json,
        },
        TasksCommand::Answer(mut a) => {
            // With --key the first positional is the answer: `answer --key K '{...}'`.
            if a.key.is_some() && a.response.is_none() && a.file.is_none() {
                a.response = a.id.take();
            }
            let task = task_ref(a.id, a.key, namespace)?;
            let (text, from_argument) = match (&a.file, a.response.as_deref()) {
                (Some(path), _) => (read_file(path, "the answer")?, false),
                (None, Some(text)) if text != "-" => (text.to_string(), true),
                (None, _) => (read_stdin(io, "the answer")?, false),
            };
            let response = parse_json("the answer", &text).map_err(|f| match f {
                Failure::Cli { code, message, .. } if from_argument => Failure::Cli {
                    code,
                    message,
                    hint: Some(
                        "the answer is JSON: quote it for the shell, e.g. '{\"approved\": true}' \
                         or '\"some text\"'"
                            .into(),
                    ),
                },
                other => other,
            })?;
            Plan::Answer {
                task,
                response,
                by: who(a.by),
                json: a.json,
            }
        }
        TasksCommand::Cancel(a) => Plan::Cancel {
            task: task_ref(a.id, a.key, namespace)?,
            reason: a.reason,
            by: who(a.by),
            json: a.json,
        },
        TasksCommand::Wait(a) => Plan::Wait {
            task: task_ref(a.id, a.key, namespace)?,
            timeout: a.timeout,
            json: a.json,
        },
        TasksCommand::Create(a) => {
            let response_schema = json_option(io, "--response-schema", &a.response_schema)?;
            let payload = match &a.payload {
                Some(p) => json_option(io, "--payload", p)?,
                None => Value::Object(Default::default()),
            };
            let payload_schema = match &a.payload_schema {
                Some(p) => Some(json_option(io, "--payload-schema", p)?),
                None => None,
            };
            let policy = match &a.policy {
                Some(p) => Some(policy_option(json_option(io, "--policy", p)?)?),
                None => None,
            };
            Plan::Create {
                new: Box::new(NewTask {
                    namespace: Some(namespace.to_string()),
                    key: a.key,
                    title: a.title,
                    payload,
                    payload_schema,
                    response_schema,
                    notify: a.notify,
                    assign_to: a.assign_to,
                    timeout_ms: a
                        .timeout
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
                    requested_by: a.requested_by,
                    verification: None,
                    callback_url: a.callback_url,
                    policy,
                }),
                callback_allow: crate::channels::callback::AllowList::from_config(
                    file.callbacks.as_ref(),
                    &std::env::vars().collect(),
                )?,
                json: a.json,
            }
        }
    })
}

/// A task named by id, or by its idempotency key within a namespace.
#[derive(Debug)]
enum TaskRef {
    Id(Uuid),
    Key { namespace: String, key: String },
}

impl TaskRef {
    async fn resolve(self, engine: &Engine) -> Result<Uuid, Failure> {
        Ok(match self {
            TaskRef::Id(id) => id,
            TaskRef::Key { namespace, key } => engine.get_by_key(&namespace, &key).await?.id,
        })
    }
}

fn task_ref(id: Option<String>, key: Option<String>, namespace: &str) -> Result<TaskRef, Failure> {
    match (id, key) {
        (Some(id), None) => Ok(TaskRef::Id(parse_id(&id)?)),
        (None, Some(key)) => Ok(TaskRef::Key {
            namespace: namespace.to_string(),
            key,
        }),
        (Some(_), Some(_)) => Err(fail(
            "invalid_argument",
            "name the task by ID or by --key, not both".to_string(),
        )),
        (None, None) => Err(fail(
            "invalid_argument",
            "name the task: ID or --key KEY".to_string(),
        )),
    }
}

fn parse_id(s: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        fail(
            "invalid_argument",
            format!("{s:?} is not a task id (a UUID such as 0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f)"),
        )
    })
}

/// `--by`, else `$USER` (`$USERNAME` on Windows), else `"cli"`.
fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

/// Parses JSON text, reporting a syntax error with its position.
fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    if text.trim().is_empty() {
        return Err(fail(
            "invalid_json",
            format!("{what} is empty: expected a JSON document such as {{\"approved\": true}}"),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&position).unwrap_or(&full);
        fail(
            "invalid_json",
            format!(
                "{what} is not valid JSON: {message} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// `--policy`'s JSON as a policy: its shape is checked here (unknown or mistyped fields, with
/// serde's message), its meaning by the engine at creation.
fn policy_option(value: Value) -> Result<crate::policy::Policy, Failure> {
    serde_json::from_value(value).map_err(|e| {
        fail(
            "invalid_argument",
            format!(
                "--policy is not a policy: {e} (expected an object with approvers, \
                 reminders_ms, escalate and on_timeout, e.g. {{\"approvers\": \
                 {{\"any_of\": [\"alice\", \"bob\"], \"required\": 2}}}})"
            ),
        )
    })
}

/// A JSON option value: the JSON itself, `@PATH` for a file, or `@-` for stdin.
fn json_option(io: &mut Io, flag: &str, value: &str) -> Result<Value, Failure> {
    let text = match value.strip_prefix('@') {
        Some("-") => read_stdin(io, flag)?,
        Some(path) => read_file(Path::new(path), flag)?,
        None => value.to_string(),
    };
    parse_json(flag, &text)
}

fn read_stdin(io: &mut Io, what: &str) -> Result<String, Failure> {
    if io.stdin_is_terminal {
        writeln!(
            io.err,
            "reading {what} (JSON) from stdin; finish with Ctrl-D"
        )?;
    }
    read_limited(&mut *io.stdin, what, "stdin")
}

fn read_file(path: &Path, what: &str) -> Result<String, Failure> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        fail(
            "invalid_argument",
            format!("cannot read {what} from {}: {e}", path.display()),
        )
    })?;
    read_limited(&mut file, what, &path.display().to_string())
}

fn read_limited(source: &mut dyn Read, what: &str, name: &str) -> Result<String, Failure> {
    let mut buf = Vec::new();
    source
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            fail(
                "invalid_argument",
                format!("cannot read {what} from {name}: {e}"),
            )
        })?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(fail(
            "too_large",
            format!("{what} is over {} MiB", MAX_INPUT_BYTES / (1024 * 1024)),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| fail("invalid_json", format!("{what} is not valid UTF-8 text")))
}

/// Commands that only read or change existing tasks should not create an empty database
/// (in the wrong directory, say): they report the missing file instead.
fn check_sqlite_exists(url: &str) -> Result<(), Failure> {
    if !url.starts_with("sqlite:") || url.contains("mode=memory") {
        return Ok(());
    }
    let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(url) else {
        return Ok(()); // opening it reports the problem
    };
    let file = options.get_filename();
    if file.to_string_lossy().starts_with("file:sqlx-in-memory") || file.exists() {
        return Ok(());
    }
    Err(Failure::Cli {
        code: "config",
        message: format!("there is no inloop database at {}", file.display()),
        hint: Some(
            "run the command where the agent keeps its .inloop directory, set --database-url or \
             INLOOP_DATABASE_URL, or create an empty database with `inloop migrate`"
                .into(),
        ),
    })
}

/// Runs the plan against the database; returns the exit code.
async fn perform(engine: &Engine, url: &str, plan: Plan, io: &mut Io<'_>) -> Result<i32, Failure> {
    match plan {
        Plan::Migrate => {
            engine.migrate().await?;
            writeln!(io.out, "database {} is up to date", redact_url(url))?;
        }
        Plan::List { filter, json } => {
            let page = engine.list(filter.clone()).await?;
            if json {
                write_json(io.out, &page)?;
            } else {
                write_list(io.out, &page, &filter)?;
            }
        }
        Plan::Show { task, json } => {
            let task = match task {
                TaskRef::Id(id) => engine.get(id).await?,
                TaskRef::Key { namespace, key } => engine.get_by_key(&namespace, &key).await?,
            };
            if json {
                write_json(io.out, &task)?;
            } else {
                write_task(io.out, &task, now_ms())?;
            }
        }
        Plan::Answer {
            task,
            response,
            by,
            json,
        } => {
            let id = task.resolve(engine).await?;
            let answer = Answer {
                response,
                by: by.clone(),
                channel: CHANNEL.into(),
            };
            let task = engine.answer(id, answer).await.map_err(|e| match e {
                e @ Error::InvalidAnswer { .. } => Failure::Engine(
                    Box::new(e),
                    Some(format!(
                        "the task is still pending; `inloop tasks show {id}` lists the fields it expects"
                    )),
                ),
                e => Failure::from(e),
            })?;
            if json {
                write_json(io.out, &task)?;
            } else {
                writeln!(io.out, "answered task {id}: accepted from {by}")?;
            }
        }
        Plan::Cancel {
            task,
            reason,
            by,
            json,
        } => {
            let id = task.resolve(engine).await?;
            let task = engine.cancel(id, &by, CHANNEL, reason.as_deref()).await?;
            if json {
                write_json(io.out, &task)?;
            } else {
                match &reason {
                    Some(r) => writeln!(io.out, "cancelled task {id} (by {by}): {r}")?,
                    None => writeln!(io.out, "cancelled task {id} (by {by})")?,
                }
            }
        }
        Plan::Audit { task, json } => {
            let id = task.resolve(engine).await?;
            // Verify the very rows shown (`Engine::verify_audit` would read them again).
            let events = engine.audit(id).await?;
            let check = audit::verify_chain(&events);
            if json {
                write_json(
                    io.out,
                    &serde_json::json!({ "events": events, "chain": check }),
                )?;
            } else {
                write_audit(io.out, &events)?;
                writeln!(io.out)?;
                if check.ok {
                    writeln!(io.out, "chain: ok ({} rows)", check.rows)?;
                }
            }
            if !check.ok {
                let seq = check.broken_at_seq.unwrap_or_default();
                let problem = check.problem.as_deref().unwrap_or("unknown problem");
                if !json {
                    writeln!(io.out, "chain: BROKEN at seq {seq}: {problem}")?;
                }
                error_line(
                    io,
                    "audit_broken",
                    &format!("the audit trail of task {id} was altered at seq {seq}: {problem}"),
                )?;
                return Ok(1);
            }
        }
        Plan::Wait {
            task,
            timeout,
            json,
        } => {
            let id = task.resolve(engine).await?;
            let task = engine.wait(id, timeout).await?;
            if json {
                write_json(io.out, &task)?;
            } else {
                write_task(io.out, &task, now_ms())?;
            }
            if task.status == Status::Pending {
                let waited =
                    timeout.map(|d| format!(" after {}", human_duration(d.as_millis() as i64)));
                error_line(
                    io,
                    "still_pending",
                    &format!("task {id} is still pending{}", waited.unwrap_or_default()),
                )?;
                return Ok(1);
            }
            if let Err(e) = rules::outcome(task) {
                error_line(io, e.code(), &engine_message(&e))?;
                return Ok(1);
            }
        }
        Plan::Serve {
            bind,
            public_url,
            log,
            json_logs,
            channels,
        } => {
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
            let setup = crate::server::setup_link(engine, &public_url, &token).await?;
            writeln!(
                io.out,
                "inloop serve: listening on http://{addr} (database {})",
                redact_url(url)
            )?;
            writeln!(io.out, "dashboard: {public_url}/")?;
            if let Some(link) = &setup {
                writeln!(
                    io.out,
                    "first run: open this link to create the admin account (works once):\n\n    {link}\n"
                )?;
            }
            io.out.flush()?;
            let configured = channels.describe();
            let channels = std::sync::Arc::new(crate::channels::Channels::new(*channels)?);
            if !configured.is_empty() {
                writeln!(io.out, "channels: {}", configured.join(", "))?;
            }
            let opts = crate::server::ServerOptions {
                public_url: Some(public_url),
                setup_token: setup.map(|_| token),
                throttle: None,
                channels: Some(channels),
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
        }
        Plan::ApikeyCreate {
            name,
            namespace,
            allow_answer,
            json,
        } => {
            let (key, secret) =
                apikeys::create_api_key(engine, &name, &namespace, allow_answer).await?;
            if json {
                write_json(io.out, &serde_json::json!({ "key": key, "secret": secret }))?;
            } else {
                writeln!(
                    io.out,
                    "created API key {} ({}) for namespace {}{}",
                    key.id,
                    key.name,
                    key.namespace,
                    if key.allow_answer {
                        ", allowed to answer"
                    } else {
                        ""
                    }
                )?;
                writeln!(io.out)?;
                writeln!(io.out, "    {secret}")?;
                writeln!(io.out)?;
            }
            writeln!(
                io.err,
                "warning: the key is shown only this once and cannot be recovered; store it now"
            )?;
        }
        Plan::ApikeyList { json } => {
            let keys = apikeys::list_api_keys(engine).await?;
            if json {
                write_json(io.out, &keys)?;
            } else if keys.is_empty() {
                writeln!(
                    io.out,
                    "no API keys (create one with `inloop apikey create`)"
                )?;
            } else {
                write_api_keys(io.out, &keys)?;
            }
        }
        Plan::ApikeyRevoke { id, json } => {
            let key = apikeys::revoke_api_key(engine, id).await?;
            if json {
                write_json(io.out, &key)?;
            } else {
                writeln!(io.out, "revoked API key {} ({})", key.id, key.name)?;
            }
        }
        Plan::People(p) => people::perform(engine, p, io).await?,
        Plan::Create {
            new,
            callback_allow,
            json,
        } => {
            let created = match callback_allow {
                Some(allow) => {
                    engine
                        .clone()
                        .with_callback_allow(allow)
                        .create(*new)
                        .await?
                }
                None => engine.create(*new).await?,
            };
            if json {
                write_json(io.out, &created)?;
            } else {
                let t = &created.task;
                if created.created && t.key == t.id.to_string() {
                    writeln!(io.out, "created task {}", t.id)?;
                } else if created.created {
                    writeln!(io.out, "created task {} (key {})", t.id, t.key)?;
                } else {
                    writeln!(
                        io.out,
                        "task {} already exists for key {} ({}); nothing was created",
                        t.id, t.key, t.status
                    )?;
                }
            }
        }
    }
    Ok(0)
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// Prints the failure to stderr; returns the exit code.
fn report(failure: Failure, io: &mut Io) -> i32 {
    let result = match failure {
        Failure::Engine(e, hint) => print_engine_error(io, &e, hint.as_deref()),
        Failure::Cli {
            code,
            message,
            hint,
        } => error_line(io, code, &message).and_then(|()| match hint {
            Some(h) => writeln!(io.err, "hint: {h}"),
            None => Ok(()),
        }),
        // A reader that went away (`inloop tasks list | head`) is not an error.
        Failure::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => return 0,
        Failure::Output(e) => error_line(io, "io", &format!("cannot write the output: {e}")),
    };
    let _ = result;
    1
}

fn print_engine_error(io: &mut Io, e: &Error, hint: Option<&str>) -> io::Result<()> {
    error_line(io, e.code(), &engine_message(e))?;
    if let Error::InvalidAnswer { errors } | Error::InvalidPayload { errors } = e {
        for line in field_error_lines(errors) {
            writeln!(io.err, "{line}")?;
        }
    }
    if let Some(h) = hint {
        writeln!(io.err, "hint: {h}")?;
    }
    Ok(())
}

fn error_line(io: &mut Io, code: &str, message: &str) -> io::Result<()> {
    if io.err_color {
        writeln!(io.err, "\x1b[1;31merror\x1b[0m [{code}]: {message}")
    } else {
        writeln!(io.err, "error [{code}]: {message}")
    }
}

/// The message after `error [code]: `, without a prefix that repeats the code.
fn engine_message(e: &Error) -> String {
    match e {
        Error::InvalidArgument(m)
        | Error::Unauthorized(m)
        | Error::Forbidden(m)
        | Error::Config(m)
        | Error::Database(m)
        | Error::Internal(m) => m.clone(),
        Error::InvalidAnswer { errors } => format!(
            "the answer does not match the task's response schema ({})",
            problems(errors.len())
        ),
        Error::InvalidPayload { errors } => format!(
            "the payload does not match its schema ({})",
            problems(errors.len())
        ),
        other => other.to_string(),
    }
}

fn problems(n: usize) -> String {
    if n == 1 {
        "1 problem".into()
    } else {
        format!("{n} problems")
    }
}

fn field_error_lines(errors: &[FieldError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            let path = if e.path.is_empty() {
                "(top level)"
            } else {
                &e.path
            };
            format!("  {path}: {}", e.message)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Output
// ------------------------------------------------------------------------------------------

fn write_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| fail("internal", format!("cannot encode the output as JSON: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn write_list(out: &mut dyn Write, page: &Page, filter: &ListFilter) -> io::Result<()> {
    if page.items.is_empty() {
        let what = match filter.status {
            Some(s) => format!("no {s} tasks"),
            None => "no tasks".to_string(),
        };
        let r#where = match &filter.namespace {
            Some(ns) => format!(" in namespace {ns}"),
            None => String::new(),
        };
        let prefix = match &filter.key_prefix {
            Some(p) => format!(" with a key starting {p:?}"),
            None => String::new(),
        };
        return writeln!(out, "{what}{where}{prefix}");
    }
    let all = filter.namespace.is_none();
    let mut headers = vec!["ID", "STATUS"];
    if all {
        headers.push("NAMESPACE");
    }
    headers.extend(["KEY", "TITLE", "CREATED", "DEADLINE/ANSWERED BY"]);
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|t| {
            let mut row = vec![t.id.to_string(), t.status.to_string()];
            if all {
                row.push(t.namespace.clone());
            }
            let key = if t.key == t.id.to_string() {
                "-".to_string()
            } else {
                one_line(&t.key, 32)
            };
            row.extend([
                key,
                one_line(&t.title, 40),
                format_ms(t.created_at),
                outcome_cell(t),
            ]);
            row
        })
        .collect();
    write_table(out, &headers, &rows)?;
    if let Some(cursor) = &page.next_cursor {
        writeln!(out)?;
        writeln!(out, "more tasks: add --cursor {cursor}")?;
    }
    Ok(())
}

/// The last list column: the deadline while a task waits, who ended it once it has ended.
fn write_api_keys(out: &mut dyn Write, keys: &[ApiKey]) -> io::Result<()> {
    let when = |t: Option<i64>| t.map(format_ms).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.to_string(),
                one_line(&k.name, 40),
                k.namespace.clone(),
                if k.allow_answer { "yes" } else { "no" }.into(),
                format_ms(k.created_at),
                when(k.last_used_at),
                when(k.revoked_at),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "ID",
            "NAME",
            "NAMESPACE",
            "ANSWERS",
            "CREATED",
            "LAST USED",
            "REVOKED",
        ],
        &rows,
    )
}

fn outcome_cell(t: &Task) -> String {
    let deadline = || t.deadline.map(format_ms).unwrap_or_else(|| "-".into());
    match t.status {
        Status::Pending | Status::TimedOut => deadline(),
        Status::Completed | Status::VerificationExhausted => t
            .answered_by
            .as_deref()
            .map(|b| one_line(b, 32))
            .unwrap_or_else(|| "-".into()),
        Status::Cancelled => t
            .cancelled_by
            .as_deref()
            .map(|b| one_line(b, 32))
            .unwrap_or_else(|| "-".into()),
    }
}

fn write_task(out: &mut dyn Write, t: &Task, now: i64) -> io::Result<()> {
    writeln!(out, "{}", t.title)?;
    writeln!(out)?;
    let mut fields: Vec<(&str, String)> = vec![
        ("id", t.id.to_string()),
        ("status", t.status.to_string()),
        ("namespace", t.namespace.clone()),
        (
            "key",
            if t.key == t.id.to_string() {
                format!("{} (generated)", t.key)
            } else {
                t.key.clone()
            },
        ),
        ("created", format_ms(t.created_at)),
    ];
    if let Some(d) = t.deadline {
        let when = if t.status == Status::Pending {
            if d > now {
                format!(" (in {})", human_duration(d - now))
            } else {
                format!(" (passed {} ago)", human_duration(now - d))
            }
        } else {
            String::new()
        };
        fields.push(("deadline", format!("{}{when}", format_ms(d))));
    } else {
        fields.push(("deadline", "none".into()));
    }
    if let Some(e) = t.ended_at {
        fields.push(("ended", format_ms(e)));
    }
    if !t.notify.is_empty() {
        fields.push(("notify", t.notify.join(", ")));
    }
    if let Some(url) = &t.callback_url {
        fields.push(("callback", url.clone()));
    }
    fields.push((
        "assigned to",
        if t.assign_to.is_empty() {
            "anyone".into()
        } else {
            t.assign_to.join(", ")
        },
    ));
    fields.push(("digest", t.digest.clone()));
    for (name, value) in fields {
        writeln!(out, "  {name:<12} {value}")?;
    }

    writeln!(out)?;
    writeln!(out, "payload:")?;
    write_indented_json(out, &t.payload)?;

    writeln!(out)?;
    writeln!(out, "expected answer:")?;
    for line in schema_summary(&t.response_schema) {
        writeln!(out, "  {line}")?;
    }

    writeln!(out)?;
    match t.status {
        Status::Pending => {
            writeln!(out, "answer: none yet")?;
            writeln!(out, "  answer with: inloop tasks answer {} '<JSON>'", t.id)?;
        }
        Status::Completed | Status::VerificationExhausted => {
            let by = t.answered_by.as_deref().unwrap_or("unknown");
            let via = t
                .answered_via
                .as_deref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default();
            let at = t
                .ended_at
                .map(|e| format!(" at {}", format_ms(e)))
                .unwrap_or_default();
            writeln!(out, "answer (from {by}{via}{at}):")?;
            match &t.response {
                Some(r) => write_indented_json(out, r)?,
                None => writeln!(out, "  none")?,
            }
        }
        Status::Cancelled => {
            let by = t
                .cancelled_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            let at = t
                .ended_at
                .map(|e| format!(" at {}", format_ms(e)))
                .unwrap_or_default();
            let reason = t
                .cancel_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            writeln!(out, "cancelled{by}{at}{reason}")?;
        }
        Status::TimedOut => {
            let at = t
                .ended_at
                .map(|e| format!(", recorded at {}", format_ms(e)))
                .unwrap_or_default();
            let deadline = t
                .deadline
                .map(format_ms)
                .unwrap_or_else(|| "its deadline".into());
            writeln!(out, "timed out without an answer (deadline {deadline}{at})")?;
        }
    }
    Ok(())
}

fn write_indented_json(out: &mut dyn Write, v: &Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    for line in text.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

fn write_audit(out: &mut dyn Write, events: &[AuditEvent]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                format_ms(e.at),
                e.kind.clone(),
                e.actor
                    .as_deref()
                    .map(|a| one_line(a, 24))
                    .unwrap_or_else(|| "-".into()),
                e.channel
                    .as_deref()
                    .map(|c| one_line(c, 12))
                    .unwrap_or_else(|| "-".into()),
                audit_summary(e),
            ]
        })
        .collect();
    write_table(
        out,
        &["SEQ", "TIME", "KIND", "ACTOR", "CHANNEL", "DATA"],
        &rows,
    )
}

/// One audit row's data in a few words (its compact JSON when the shape is unknown).
fn audit_summary(e: &AuditEvent) -> String {
    let d = &e.data;
    let text = |k: &str| d.get(k).and_then(Value::as_str);
    let summary = match e.kind.as_str() {
        audit::kind::CREATED => {
            let mut parts = Vec::new();
            if let Some(digest) = text("digest") {
                parts.push(format!(
                    "digest {}",
                    digest.chars().take(12).collect::<String>()
                ));
            }
            if let Some(deadline) = text("deadline") {
                parts.push(format!("deadline {deadline}"));
            }
            Some(parts.join(", ")).filter(|s| !s.is_empty())
        }
        audit::kind::ANSWER_ACCEPTED => d.get("response").map(canonical_json),
        audit::kind::ANSWER_REFUSED => {
            let errors: Vec<FieldError> = d
                .get("errors")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let detail = match errors.first() {
                Some(first) => {
                    let more = match errors.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    field_error_lines(std::slice::from_ref(first))
                        .concat()
                        .trim_start()
                        .to_string()
                        + &more
                }
                None => text("message").unwrap_or_default().to_string(),
            };
            text("reason").map(|r| format!("{r}: {detail}"))
        }
        audit::kind::CANCELLED => Some(match text("reason") {
            Some(r) => format!("reason: {r}"),
            None => "no reason given".into(),
        }),
        audit::kind::TIMED_OUT => text("deadline").map(|dl| format!("deadline {dl}")),
        _ => None,
    };
    one_line(&summary.unwrap_or_else(|| canonical_json(d)), 80)
}

/// Left-aligned columns two spaces apart, no trailing spaces.
fn write_table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            let width = widths.get(i).copied().unwrap_or(0);
            s.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// The text on one line (control characters as spaces), cut to `max` characters with `…`.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// `3d 4h`, `5m 10s`, `12s`, `250ms`: the two largest units.
fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let units = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = s;
    for (size, name) in units {
        if rest >= size || !parts.is_empty() {
            parts.push((rest / size, name));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------------------------------
// Schema summary
// ------------------------------------------------------------------------------------------

/// A short, readable description of a response schema: one line per top-level field
/// (`name  type  required|optional  description`), or one line for a non-object schema.
fn schema_summary(schema: &Value) -> Vec<String> {
    let props = schema.get("properties").and_then(Value::as_object);
    let Some(props) = props.filter(|p| !p.is_empty()) else {
        return vec![describe(schema, schema, 0)];
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = props
        .iter()
        .map(|(name, sub)| {
            let mut row = vec![
                one_line(name, 32),
                one_line(&describe(schema, sub, 0), 60),
                if required.contains(&name.as_str()) {
                    "required".into()
                } else {
                    "optional".into()
                },
            ];
            if let Some(d) = sub.get("description").and_then(Value::as_str) {
                row.push(one_line(d, 60));
            }
            row
        })
        .collect();
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    if write_table(&mut buf, &["FIELD", "TYPE", "", "DESCRIPTION"], &rows).is_ok() {
        lines.extend(
            String::from_utf8_lossy(&buf)
                .lines()
                .skip(1)
                .map(str::to_string),
        );
    }
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        lines.push("(no other fields)".into());
    }
    lines
}

/// The type of a (sub)schema in a few words: `boolean`, `integer 1..5`, `one of "a", "b"`,
/// `array of string`, `Refund (object)`, `string | null`.
fn describe(root: &Value, s: &Value, depth: usize) -> String {
    if depth > 4 {
        return "…".into();
    }
    match s {
        Value::Bool(true) => return "any JSON value".into(),
        Value::Bool(false) => return "nothing (no answer is valid)".into(),
        Value::Object(o) if o.is_empty() => return "any JSON value".into(),
        Value::Object(_) => {}
        _ => return "any JSON value".into(),
    }
    if let Some(c) = s.get("const") {
        return format!("exactly {}", one_line(&c.to_string(), 40));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        let shown: Vec<String> = values.iter().take(8).map(Value::to_string).collect();
        let more = if values.len() > 8 { ", …" } else { "" };
        return format!("one of {}{more}", shown.join(", "));
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(target) if target.get("properties").is_some() => format!("{name} (object)"),
            Some(target) => describe(root, target, depth + 1),
            None => format!("see {r}"),
        };
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            return alts
                .iter()
                .map(|a| describe(root, a, depth + 1))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if s.get("properties").is_some() => vec!["object"],
        _ if s.get("items").is_some() => vec!["array"],
        _ => vec![],
    };
    if types.is_empty() {
        return "any JSON value".into();
    }
    types
        .iter()
        .map(|t| {
            let mut d = match *t {
                "array" => match s.get("items") {
                    Some(items) => format!("array of {}", describe(root, items, depth + 1)),
                    None => "array".into(),
                },
                other => other.to_string(),
            };
            if let Some(f) = s.get("format").and_then(Value::as_str) {
                d.push_str(&format!(" ({f})"));
            }
            let bound = |k: &str| s.get(k).filter(|v| v.is_number()).map(Value::to_string);
            let (lo, hi) = match *t {
                "number" | "integer" => (bound("minimum"), bound("maximum")),
                "string" => (bound("minLength"), bound("maxLength")),
                "array" => (bound("minItems"), bound("maxItems")),
                _ => (None, None),
            };
            let unit = match *t {
                "string" => " chars",
                "array" => " items",
                _ => "",
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) => d.push_str(&format!(" {lo}..{hi}{unit}")),
                (Some(lo), None) => d.push_str(&format!(" >= {lo}{unit}")),
                (None, Some(hi)) => d.push_str(&format!(" <= {hi}{unit}")),
                (None, None) => {}
            }
            d
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Captured output of one run.
    struct Ran {
        code: i32,
        out: String,
        err: String,
    }

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("inloop")
            .chain(list.iter().copied())
            .map(str::to_string)
            .collect()
    }

    fn run_with(list: &[&str], stdin: &str) -> Ran {
        let mut input = stdin.as_bytes();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut input,
            out: &mut out,
            err: &mut err,
            stdin_is_terminal: false,
            out_color: false,
            err_color: false,
        };
        let code = run(args(list), &mut io);
        Ran {
            code,
            out: String::from_utf8_lossy(&out).into_owned(),
            err: String::from_utf8_lossy(&err).into_owned(),
        }
    }

    fn plan_of(list: &[&str], stdin: &str) -> Result<Plan, Failure> {
        let cli = Cli::try_parse_from(args(list)).expect("parses");
        let mut input = stdin.as_bytes();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut input,
            out: &mut out,
            err: &mut err,
            stdin_is_terminal: false,
            out_color: false,
            err_color: false,
        };
        let ns = cli.namespace.unwrap_or_else(|| "default".into());
        plan(cli.command, &ns, &Default::default(), &mut io)
    }

    fn parse_err_code(list: &[&str]) -> i32 {
        run_with(list, "").code
    }

    /// A fresh directory under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "inloop-cli-{name}-{}-{}",
            std::process::id(),
            Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_list_options() {
        let Ok(Plan::List { filter, json }) = plan_of(
            &[
                "--namespace",
                "ops",
                "tasks",
                "list",
                "--status",
                "timed_out",
                "--key-prefix",
                "refund-",
                "--limit",
                "5",
                "--cursor",
                "abc",
                "--json",
            ],
            "",
        ) else {
            panic!("not a list plan");
        };
        assert!(json);
        assert_eq!(filter.namespace.as_deref(), Some("ops"));
        assert_eq!(filter.status, Some(Status::TimedOut));
        assert_eq!(filter.key_prefix.as_deref(), Some("refund-"));
        assert_eq!(filter.limit, Some(5));
        assert_eq!(filter.cursor.as_deref(), Some("abc"));

        // Global options also work after the subcommand; --all-namespaces drops the filter.
        let Ok(Plan::List { filter, json }) =
            plan_of(&["tasks", "ls", "--all-namespaces", "--namespace", "x"], "")
        else {
            panic!("not a list plan");
        };
        assert!(!json);
        assert_eq!(filter.namespace, None);
        assert_eq!(filter.limit, Some(50));
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        assert_eq!(parse_err_code(&[]), 2);
        assert_eq!(parse_err_code(&["tasks"]), 2);
        assert_eq!(parse_err_code(&["tasks", "list", "--status", "done"]), 2);
        assert_eq!(parse_err_code(&["tasks", "list", "--limit", "0"]), 2);
        assert_eq!(parse_err_code(&["tasks", "list", "--limit", "abc"]), 2);
        assert_eq!(parse_err_code(&["tasks", "show"]), 2);
        assert_eq!(
            parse_err_code(&["tasks", "wait", "x", "--timeout", "soon"]),
            2
        );
        assert_eq!(
            parse_err_code(&["tasks", "answer", "x", "{}", "--file", "a.json"]),
            2
        );
        assert_eq!(parse_err_code(&["frobnicate"]), 2);

        let help = run_with(&["--help"], "");
        assert_eq!(help.code, 0);
        assert!(help.out.contains("Usage: inloop"), "{}", help.out);
        assert!(help.err.is_empty());
        let help = run_with(&["tasks", "answer", "--help"], "");
        assert_eq!(help.code, 0);
        assert!(help.out.contains("RESPONSE"), "{}", help.out);
        let version = run_with(&["--version"], "");
        assert_eq!(version.code, 0);
        assert!(version.out.contains(env!("CARGO_PKG_VERSION")));
        let version = run_with(&["tasks", "--version"], "");
        assert_eq!(version.code, 0);
    }

    #[test]
    fn parses_answer_sources() {
        let id = "0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f";
        let Ok(Plan::Answer {
            response,
            by,
            task: TaskRef::Id(parsed),
            json,
        }) = plan_of(
            &[
                "tasks",
                "answer",
                id,
                r#"{"approved": true}"#,
                "--by",
                "alice",
            ],
            "",
        )
        else {
            panic!("not an answer plan");
        };
        assert_eq!(parsed.to_string(), id);
        assert_eq!(response, json!({"approved": true}));
        assert_eq!(by, "alice");
        assert!(!json);

        // --key names the task; the first positional is then the answer.
        let Ok(Plan::Answer {
            task: TaskRef::Key { namespace, key },
            response,
            ..
        }) = plan_of(&["tasks", "answer", "--key", "refund-A-1", "true"], "")
        else {
            panic!("not an answer-by-key plan");
        };
        assert_eq!(
            (namespace.as_str(), key.as_str()),
            ("default", "refund-A-1")
        );
        assert_eq!(response, json!(true));
        assert!(plan_of(&["tasks", "answer", id, "--key", "k", "true"], "").is_err());

        // `-` and a missing RESPONSE both read stdin; a negative number is an answer, not a flag.
        for list in [
            &["tasks", "answer", id, "-"][..],
            &["tasks", "answer", id][..],
        ] {
            let Ok(Plan::Answer { response, .. }) = plan_of(list, " [1, 2] \n") else {
                panic!("not an answer plan");
            };
            assert_eq!(response, json!([1, 2]));
        }
        let Ok(Plan::Answer { response, .. }) = plan_of(&["tasks", "answer", id, "-5"], "") else {
            panic!("not an answer plan");
        };
        assert_eq!(response, json!(-5));

        // --file
        let dir = temp_dir("file");
        let path = dir.join("answer.json");
        std::fs::write(&path, r#"{"note": "from a file"}"#).expect("write");
        let Ok(Plan::Answer { response, .. }) = plan_of(
            &[
                "tasks",
                "answer",
                id,
                "--file",
                path.to_str().expect("utf-8"),
            ],
            "",
        ) else {
            panic!("not an answer plan");
        };
        assert_eq!(response, json!({"note": "from a file"}));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn create_takes_a_policy() {
        let policy = r#"{"approvers": {"any_of": ["alice@acme.com", "role:finance"], "required": 2,
            "exclude_requester": true}, "reminders_ms": [1800000],
            "escalate": [{"after_ms": 3600000, "notify": ["slack:@cfo"]}],
            "on_timeout": {"default": {"approved": false}}}"#;
        let approval = r#"{"type": "object", "required": ["approved"],
            "properties": {"approved": {"type": "boolean"}}}"#;
        let base = [
            "tasks",
            "create",
            "--title",
            "Wire?",
            "--response-schema",
            approval,
            "--requested-by",
            "agent-7",
            "--timeout",
            "8h",
        ];
        let Ok(Plan::Create { new, .. }) =
            plan_of(&[&base[..], &["--policy", policy]].concat(), "")
        else {
            panic!("not a create plan");
        };
        let p = new.policy.expect("the policy");
        let a = p.approvers.as_ref().expect("approvers");
        assert_eq!(a.any_of, ["alice@acme.com", "role:finance"]);
        assert_eq!((a.required, a.exclude_requester), (2, true));
        assert_eq!(p.reminders_ms, [1_800_000]);
        assert_eq!(p.escalate[0].notify, ["slack:@cfo"]);
        assert_eq!(
            p.on_timeout,
            crate::policy::OnTimeout::Default(json!({"approved": false}))
        );
        // From stdin, like the other JSON options.
        let Ok(Plan::Create { new, .. }) = plan_of(
            &[&base[..], &["--policy", "@-"]].concat(),
            r#"{"reminders_ms": [60000]}"#,
        ) else {
            panic!("not a create plan");
        };
        assert_eq!(new.policy.expect("policy").reminders_ms, [60_000]);

        let dir = temp_dir("policy");
        let url = format!("sqlite:{}", dir.join("p.db").display());
        let run = |extra: &[&str]| {
            let mut list = vec!["--database-url", url.as_str()];
            list.extend_from_slice(&base);
            list.extend_from_slice(extra);
            run_with(&list, "")
        };
        // Bad JSON, and JSON that is not a policy: clear errors, nothing created.
        let r = run(&["--policy", r#"{"approvers": "#]);
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .starts_with("error [invalid_json]: --policy is not valid JSON: "),
            "{}",
            r.err
        );
        let r = run(&["--policy", r#"{"approver": {"any_of": ["a"]}}"#]);
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with(
                "error [invalid_argument]: --policy is not a policy: unknown field `approver`"
            ),
            "{}",
            r.err
        );
        let r = run(&["--policy", r#"{"reminders_ms": [-5]}"#]);
        assert_eq!(r.code, 1);
        assert!(r.err.contains("--policy is not a policy"), "{}", r.err);
        // The engine's checks: a reminder after the deadline.
        let r = run(&["--policy", r#"{"reminders_ms": [36000000]}"#]);
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with(
                "error [invalid_argument]: policy: reminder 1 is due after the task's timeout"
            ),
            "{}",
            r.err
        );
        // A good one is stored, with its timers.
        let r = run(&["--key", "wire-1", "--policy", policy, "--json"]);
        assert_eq!(r.code, 0, "{}", r.err);
        let out: Value = serde_json::from_str(&r.out).expect("JSON");
        assert_eq!(out["task"]["policy"]["approvers"]["required"], 2);
        assert_eq!(out["task"]["requested_by"], "agent-7");
        let kinds: Vec<_> = out["task"]["timers"]
            .as_array()
            .expect("timers")
            .iter()
            .map(|t| t["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(kinds, ["reminder", "escalation"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn json_errors_name_the_position_and_touch_no_database() {
        let dir = temp_dir("badjson");
        let db = dir.join("never.db");
        let url = format!("sqlite:{}", db.display());
        let id = "0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f";

        let r = run_with(
            &[
                "--database-url",
                &url,
                "tasks",
                "answer",
                id,
                r#"{"approved": tru}"#,
            ],
            "",
        );
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with(
                "error [invalid_json]: the answer is not valid JSON: expected ident (line 1, column 17)\n"
            ),
            "{}",
            r.err
        );
        assert!(r.err.contains("hint: the answer is JSON"), "{}", r.err);
        assert!(r.out.is_empty());

        let r = run_with(
            &["--database-url", &url, "tasks", "answer", id],
            "{\n  \"a\": 1,\n}",
        );
        assert_eq!(r.code, 1);
        assert!(r.err.contains("(line 3, column 1)"), "{}", r.err);
        assert!(!r.err.contains("hint"), "{}", r.err);

        let r = run_with(&["--database-url", &url, "tasks", "answer", id], "  \n");
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .starts_with("error [invalid_json]: the answer is empty"),
            "{}",
            r.err
        );

        let r = run_with(&["--database-url", &url, "tasks", "show", "not-a-uuid"], "");
        assert_eq!(r.code, 1);
        assert_eq!(
            r.err.lines().next(),
            Some(
                "error [invalid_argument]: \"not-a-uuid\" is not a task id (a UUID such as \
                 0190f3a2-7b1c-7d4e-8f00-1a2b3c4d5e6f)"
            )
        );

        let r = run_with(
            &[
                "--database-url",
                &url,
                "tasks",
                "answer",
                id,
                "--file",
                "/nonexistent/x.json",
            ],
            "",
        );
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with(
                "error [invalid_argument]: cannot read the answer from /nonexistent/x.json"
            ),
            "{}",
            r.err
        );

        assert!(!db.exists(), "no database was created");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reading_commands_refuse_a_missing_sqlite_file() {
        let dir = temp_dir("missing");
        let db = dir.join("sub").join("inloop.db");
        let url = format!("sqlite:{}", db.display());
        let r = run_with(&["--database-url", &url, "tasks", "list"], "");
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .starts_with("error [config]: there is no inloop database at "),
            "{}",
            r.err
        );
        assert!(r.err.contains("inloop migrate"), "{}", r.err);
        assert!(!db.exists());

        let r = run_with(&["--database-url", &url, "migrate"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            format!("database sqlite://{} is up to date\n", db.display())
        );
        assert!(db.exists());
        let r = run_with(
            &[
                "--database-url",
                &url,
                "--namespace",
                "default",
                "tasks",
                "list",
            ],
            "",
        );
        assert_eq!(
            (r.code, r.out.as_str()),
            (0, "no tasks in namespace default\n"),
            "{}",
            r.err
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn odd_argument_vectors_do_not_panic() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            stdin: &mut io::empty(),
            out: &mut out,
            err: &mut err,
            stdin_is_terminal: false,
            out_color: false,
            err_color: false,
        };
        assert_eq!(run(Vec::new(), &mut io), 2);
        assert_eq!(run(vec![String::new()], &mut io), 2);
        assert_eq!(run(args(&["tasks", "show", "\u{0}\u{1b}[31m"]), &mut io), 1);
    }

    /// Called from inside a runtime (an async host), the command runs on its own thread.
    #[tokio::test]
    async fn runs_from_inside_a_runtime() {
        assert_eq!(main_with_args(args(&["--version"])), 0);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        for bad in ["", "0", "-1", "x", "5y", "1e999", "..", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(human_duration(250), "250ms");
        assert_eq!(human_duration(61_000), "1m 1s");
        assert_eq!(human_duration(3_600_000), "1h");
        assert_eq!(human_duration(90_061_000), "1d 1h");
    }

    #[test]
    fn schema_summaries() {
        let schema = json!({
            "type": "object",
            "properties": {
                "approved": {"type": "boolean", "description": "Refund it?"},
                "amount": {"type": "number", "minimum": 0, "maximum": 500},
                "reason": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                "tags": {"type": "array", "items": {"type": "string"}},
                "level": {"$ref": "#/$defs/Level"},
                "refund": {"$ref": "#/$defs/Refund"}
            },
            "required": ["approved", "amount"],
            "additionalProperties": false,
            "$defs": {
                "Level": {"enum": ["low", "high"]},
                "Refund": {"type": "object", "properties": {"x": {"type": "integer"}}}
            }
        });
        let lines = schema_summary(&schema);
        let find = |f: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(f))
                .unwrap_or_else(|| panic!("no line for {f}: {lines:?}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(find("approved"), "approved boolean required Refund it?");
        assert_eq!(find("amount"), "amount number 0..500 required");
        assert_eq!(find("reason"), "reason string | null optional");
        assert_eq!(find("tags"), "tags array of string optional");
        assert_eq!(find("level"), "level one of \"low\", \"high\" optional");
        assert_eq!(find("refund"), "refund Refund (object) optional");
        assert_eq!(lines.last().map(String::as_str), Some("(no other fields)"));

        assert_eq!(schema_summary(&json!({})), vec!["any JSON value"]);
        assert_eq!(schema_summary(&json!({"type": "boolean"})), vec!["boolean"]);
        assert_eq!(
            schema_summary(&json!({"type": "string", "maxLength": 200})),
            vec!["string <= 200 chars"]
        );
    }

    #[test]
    fn tables_align_and_truncate() {
        let mut buf = Vec::new();
        write_table(
            &mut buf,
            &["A", "LONG HEADER", "C"],
            &[
                vec!["xyz".into(), "1".into(), "".into()],
                vec!["é".into(), "22".into(), "last".into()],
            ],
        )
        .expect("write");
        assert_eq!(
            String::from_utf8(buf).expect("utf-8"),
            "A    LONG HEADER  C\nxyz  1\né    22           last\n"
        );
        assert_eq!(one_line("a\nb\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 5), "abcd…");
    }

    /// A real SQLite file: a task created through the engine, then answered, shown and
    /// audited through the command line.
    #[test]
    fn end_to_end_on_sqlite() {
        let dir = temp_dir("e2e");
        let db = dir.join("inloop.db");
        let url = format!("sqlite:{}", db.display());

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (task, other) = rt.block_on(async {
            let engine = Engine::open(&url, EngineOptions::default())
                .await
                .expect("open");
            let schema = json!({
                "type": "object",
                "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
                "required": ["approved"]
            });
            let task = engine
                .create(NewTask {
                    title: "Approve the refund for order A-1?".into(),
                    payload: json!({"order_id": "A-1", "amount": 500.0}),
                    response_schema: schema.clone(),
                    key: Some("refund-A-1".into()),
                    timeout_ms: Some(3_600_000),
                    requested_by: Some("refund-agent".into()),
                    ..Default::default()
                })
                .await
                .expect("create")
                .task;
            let other = engine
                .create(NewTask {
                    title: "Ship it?".into(),
                    payload: json!({}),
                    response_schema: schema,
                    ..Default::default()
                })
                .await
                .expect("create")
                .task;
            engine.close().await;
            (task, other)
        });
        drop(rt);
        let id = task.id.to_string();
        // Explicit options, so INLOOP_* variables in the environment change nothing.
        let cli = |list: &[&str], stdin: &str| {
            let ns = if list.contains(&"--namespace") {
                vec![]
            } else {
                vec!["--namespace", "default"]
            };
            let mut full = vec!["--database-url", url.as_str()];
            full.extend(ns);
            full.extend_from_slice(list);
            run_with(&full, stdin)
        };

        // list
        let r = cli(&["tasks", "list"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        let lines: Vec<&str> = r.out.lines().collect();
        assert_eq!(lines.len(), 3, "{}", r.out);
        assert!(lines[0].starts_with("ID  "), "{}", r.out);
        assert!(lines[0].ends_with("DEADLINE/ANSWERED BY"), "{}", r.out);
        assert!(
            lines[1].starts_with(&other.id.to_string()),
            "newest first: {}",
            r.out
        );
        assert!(
            lines[2].contains("refund-A-1") && lines[2].contains("pending"),
            "{}",
            r.out
        );
        let r = cli(&["tasks", "list", "--json", "--limit", "1"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        let page: Page = serde_json::from_str(&r.out).expect("a page");
        assert_eq!(page.items.len(), 1);
        let cursor = page.next_cursor.expect("a next page");
        let r = cli(&["tasks", "list", "--limit", "1"], "");
        assert!(
            r.out
                .contains(&format!("more tasks: add --cursor {cursor}")),
            "{}",
            r.out
        );
        let r = cli(&["tasks", "list", "--limit", "1", "--cursor", &cursor], "");
        assert!(
            r.out.contains(&id) && !r.out.contains("more tasks"),
            "{}",
            r.out
        );
        let r = cli(&["tasks", "list", "--namespace", "elsewhere"], "");
        assert_eq!(r.out, "no tasks in namespace elsewhere\n");

        // answers: bad JSON, schema-invalid, valid, then a late duplicate
        let r = cli(&["tasks", "answer", &id, "{approved: true}"], "");
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("error [invalid_json]: the answer is not valid JSON: key must be a string (line 1, column 2)"), "{}", r.err);

        let r = cli(
            &[
                "tasks",
                "answer",
                &id,
                r#"{"approved": "yes"}"#,
                "--by",
                "alice",
            ],
            "",
        );
        assert_eq!(r.code, 1);
        let err: Vec<&str> = r.err.lines().collect();
        assert_eq!(
            err[0],
            "error [invalid_answer]: the answer does not match the task's response schema (1 problem)"
        );
        assert!(err[1].starts_with("  /approved: "), "{}", r.err);
        assert!(
            err[2].starts_with("hint: the task is still pending"),
            "{}",
            r.err
        );
        let r = cli(
            &["tasks", "answer", &id, "--by", "alice"],
            r#"{"note": "hm"}"#,
        );
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .contains("  (top level): \"approved\" is a required property"),
            "{}",
            r.err
        );

        let r = cli(
            &[
                "tasks",
                "answer",
                &id,
                r#"{"approved": true, "note": "ok"}"#,
                "--by",
                "alice",
            ],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(r.out, format!("answered task {id}: accepted from alice\n"));
        let r = cli(
            &[
                "tasks",
                "answer",
                &id,
                r#"{"approved": false}"#,
                "--by",
                "bob",
            ],
            "",
        );
        assert_eq!(r.code, 1);
        assert!(
            r.err.starts_with(&format!(
                "error [conflict]: task {id} was already answered by alice at "
            )),
            "{}",
            r.err
        );

        // show
        let r = cli(&["tasks", "show", &id], "");
        assert_eq!(r.code, 0, "{}", r.err);
        for needle in [
            "Approve the refund for order A-1?",
            "status       completed",
            "key          refund-A-1",
            "\"order_id\": \"A-1\"",
            "approved  boolean  required",
            "answer (from alice via cli at ",
            "\"note\": \"ok\"",
        ] {
            assert!(r.out.contains(needle), "missing {needle:?} in\n{}", r.out);
        }
        let r = cli(&["tasks", "show", &id, "--json"], "");
        let shown: Task = serde_json::from_str(&r.out).expect("a task");
        assert_eq!(
            shown.response,
            Some(json!({"approved": true, "note": "ok"}))
        );
        let missing = Uuid::now_v7().to_string();
        let r = cli(&["tasks", "show", &missing], "");
        assert_eq!(r.code, 1);
        assert_eq!(
            r.err,
            format!("error [not_found]: task {missing} not found\n")
        );

        // audit: created, two refusals, the accepted answer, the late refusal
        let r = cli(&["tasks", "audit", &id], "");
        assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
        let kinds: Vec<&str> = r
            .out
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert_eq!(
            kinds,
            [
                "created",
                "answer_refused",
                "answer_refused",
                "answer_accepted",
                "answer_refused"
            ],
            "{}",
            r.out
        );
        assert!(r.out.ends_with("\nchain: ok (5 rows)\n"), "{}", r.out);
        let r = cli(&["tasks", "audit", &id, "--json"], "");
        let v: Value = serde_json::from_str(&r.out).expect("json");
        assert_eq!(v["chain"]["ok"], json!(true));
        assert_eq!(v["events"].as_array().map(Vec::len), Some(5));

        // wait: an answered task returns at once (exit 0); a pending one times out (exit 1)
        let r = cli(&["tasks", "wait", &id, "--json"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        let other_id = other.id.to_string();
        let r = cli(&["tasks", "wait", &other_id, "--timeout", "50ms"], "");
        assert_eq!(r.code, 1);
        assert!(r.out.contains("answer: none yet"), "{}", r.out);
        assert_eq!(
            r.err,
            format!("error [still_pending]: task {other_id} is still pending after 50ms\n")
        );

        // cancel, then waiting reports the cancellation
        let r = cli(
            &[
                "tasks",
                "cancel",
                &other_id,
                "--reason",
                "not needed",
                "--by",
                "carol",
            ],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(
            r.out,
            format!("cancelled task {other_id} (by carol): not needed\n")
        );
        let r = cli(&["tasks", "wait", &other_id], "");
        assert_eq!(r.code, 1);
        assert!(r.out.contains("cancelled by carol at "), "{}", r.out);
        assert!(r.err.starts_with("error [cancelled]: task "), "{}", r.err);
        let r = cli(&["tasks", "cancel", &other_id], "");
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("error [conflict]: "), "{}", r.err);
        let r = cli(&["tasks", "list", "--status", "cancelled"], "");
        assert!(
            r.out.contains(&other_id) && r.out.contains("carol"),
            "{}",
            r.out
        );

        // create through the CLI, idempotently
        let create = [
            "tasks",
            "create",
            "--title",
            "Deploy?",
            "--key",
            "deploy-1",
            "--response-schema",
            r#"{"type": "boolean"}"#,
            "--timeout",
            "1h",
        ];
        let r = cli(&create, "");
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(r.out.starts_with("created task "), "{}", r.out);
        let r = cli(&create, "");
        assert!(
            r.out.contains("already exists for key deploy-1 (pending)"),
            "{}",
            r.out
        );

        // The real entry point (prints to the process's stdout).
        assert_eq!(
            main_with_args(args(&[
                "--database-url",
                &url,
                "tasks",
                "list",
                "--status",
                "completed"
            ])),
            0
        );

        // An altered audit row is caught.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
            sqlx::query("DROP TRIGGER inloop_audit_append_only_update")
                .execute(&mut conn)
                .await
                .expect("drop trigger");
            sqlx::query("UPDATE inloop_audit SET data = '{\"response\":{\"approved\":false}}' WHERE task_id = ? AND seq = 4")
                .bind(&id)
                .execute(&mut conn)
                .await
                .expect("tamper");
            conn.close().await.expect("close");
        });
        drop(rt);
        let r = cli(&["tasks", "audit", &id], "");
        assert_eq!(r.code, 1);
        assert!(
            r.out
                .ends_with("\nchain: BROKEN at seq 4: hash does not match the row's contents\n"),
            "{}",
            r.out
        );
        assert!(r.err.starts_with("error [audit_broken]: "), "{}", r.err);

        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn user_and_namespace_commands() {
        let dir = temp_dir("users");
        let url = format!("sqlite:{}", dir.join("inloop.db").display());
        let db = |rest: &[&str]| -> Vec<String> {
            ["--database-url", url.as_str()]
                .iter()
                .chain(rest)
                .map(|s| s.to_string())
                .collect()
        };
        let run_db = |rest: &[&str], stdin: &str| {
            let a = db(rest);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            run_with(&refs, stdin)
        };
        // a generated password is printed once and works
        let r = run_db(
            &[
                "user",
                "add",
                "Alice",
                "--email",
                "alice@acme.com",
                "--group",
                "finance",
            ],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(r.out.starts_with("added reviewer alice"), "{}", r.out);
        assert!(r.err.contains("shown only this once"), "{}", r.err);
        let password = r.out.lines().nth(3).unwrap().trim().to_string();
        assert_eq!(password.len(), 20);
        // a password from stdin; an empty one is refused
        let r = run_db(
            &["user", "add", "root", "--role", "admin", "--password-stdin"],
            "long enough pw\n",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        let r = run_db(&["user", "add", "x", "--password-stdin"], "");
        assert_eq!(r.code, 1);
        assert!(r.err.contains("no password on stdin"), "{}", r.err);
        let r = run_db(&["user", "add", "alice"], "");
        assert_eq!(r.code, 1);
        assert!(r.err.contains("already exists"), "{}", r.err);
        let r = run_db(&["user", "list", "--json"], "");
        let list: Vec<crate::users::User> = serde_json::from_str(&r.out).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].groups, ["finance"]);
        let r = run_db(&["user", "groups", "alice", "legal", "ops"], "");
        assert_eq!(r.out, "alice is in legal, ops\n");
        let r = run_db(&["user", "disable", "alice"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        let r = run_db(&["user", "reset-password", "nobody"], "");
        assert_eq!(r.code, 1);
        assert!(
            r.err
                .contains("error [not_found]: user \"nobody\" not found"),
            "{}",
            r.err
        );
        let r = run_db(
            &["namespace", "set", "payments", "--unassigned", "admins"],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        let r = run_db(&["namespace", "list"], "");
        assert!(
            r.out.contains("payments") && r.out.contains("admins"),
            "{}",
            r.out
        );
        assert_eq!(
            run_db(
                &["namespace", "set", "payments", "--unassigned", "nobody"],
                ""
            )
            .code,
            2
        );
    }

    #[test]
    fn create_with_a_callback_url() {
        let dir = temp_dir("callback");
        let url = format!("sqlite:{}", dir.join("inloop.db").display());
        let create = |extra: &[&str], key: &str, callback: &str| {
            let mut a = vec!["--database-url", url.as_str()];
            a.extend_from_slice(extra);
            a.extend_from_slice(&[
                "tasks",
                "create",
                "--title",
                "Approve?",
                "--response-schema",
                r#"{"type": "boolean"}"#,
                "--key",
                key,
                "--callback-url",
                callback,
                "--json",
            ]);
            run_with(&a, "")
        };
        // Without [callbacks] here, only the URL's form is checked (the server's dispatcher
        // checks its allow-list before sending).
        let r = create(&[], "k1", "https://Engine.Internal:443/hooks/./x");
        assert_eq!(r.code, 0, "{}", r.err);
        let v: Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(v["task"]["callback_url"], "https://engine.internal/hooks/x");
        let r = run_with(
            &["--database-url", &url, "tasks", "show", "--key", "k1"],
            "",
        );
        assert!(
            r.out
                .contains("callback     https://engine.internal/hooks/x"),
            "{}",
            r.out
        );
        let r = create(&[], "k2", "ftp://engine.internal/x");
        assert_eq!(r.code, 1);
        assert!(
            r.err.contains("[invalid_argument]") && r.err.contains("http or https"),
            "{}",
            r.err
        );
        // With [callbacks] in the configuration, a URL it does not allow is refused at once.
        let config = dir.join("inloop.toml");
        std::fs::write(
            &config,
            format!(
                "[callbacks]\nallow = [\"https://engine.internal/hooks/\"]\nsecret = \"{}\"\n",
                crate::channels::webhook::generate_secret()
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        let with = ["--config", config.as_str()];
        let r = create(&with, "k3", "https://engine.internal.evil.com/hooks/x");
        assert_eq!(r.code, 1, "{}", r.out);
        assert!(
            r.err.contains("[invalid_argument]") && r.err.contains("not allowed"),
            "{}",
            r.err
        );
        let r = run_with(
            &["--database-url", &url, "tasks", "show", "--key", "k3"],
            "",
        );
        assert_eq!(r.code, 1, "nothing was created: {}", r.out);
        let r = create(&with, "k4", "https://engine.internal/hooks/done");
        assert_eq!(r.code, 0, "{}", r.err);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn apikey_create_list_revoke() {
        let dir = temp_dir("apikey");
        let url = format!("sqlite:{}", dir.join("inloop.db").display());
        let r = run_with(
            &[
                "--database-url",
                &url,
                "--namespace",
                "ops",
                "apikey",
                "create",
                "--name",
                "agent-1",
            ],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(r.out.contains("for namespace ops"), "{}", r.out);
        assert!(r.err.contains("shown only this once"), "{}", r.err);
        let secret = r
            .out
            .split_whitespace()
            .find(|w| w.starts_with("ilk_"))
            .expect("the key is printed");
        assert!(apikeys::is_well_formed(secret), "{secret}");

        let r = run_with(
            &[
                "--database-url",
                &url,
                "apikey",
                "create",
                "--name",
                "reviewer",
                "--allow-answer",
                "--json",
            ],
            "",
        );
        assert_eq!(r.code, 0, "{}", r.err);
        let v: Value = serde_json::from_str(&r.out).unwrap();
        assert_eq!(v["key"]["namespace"], "default");
        assert_eq!(v["key"]["allow_answer"], true);
        assert!(v["secret"].as_str().unwrap().starts_with("ilk_"));
        assert!(v["key"].get("hash").is_none());
        let reviewer = v["key"]["id"].as_str().unwrap().to_string();

        let r = run_with(&["--database-url", &url, "apikey", "list"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(r.out.starts_with("ID "), "{}", r.out);
        assert!(
            r.out.contains("agent-1") && r.out.contains("reviewer"),
            "{}",
            r.out
        );
        assert!(!r.out.contains("ilk_"), "{}", r.out);

        let r = run_with(&["--database-url", &url, "apikey", "revoke", &reviewer], "");
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(r.out, format!("revoked API key {reviewer} (reviewer)\n"));

        let r = run_with(&["--database-url", &url, "apikey", "list", "--json"], "");
        assert_eq!(r.code, 0, "{}", r.err);
        let keys: Vec<ApiKey> = serde_json::from_str(&r.out).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name, "agent-1");
        assert!(keys[0].revoked_at.is_none());
        assert!(keys[1].revoked_at.is_some());

        let r = run_with(
            &[
                "--database-url",
                &url,
                "apikey",
                "revoke",
                &Uuid::now_v7().to_string(),
            ],
            "",
        );
        assert_eq!(r.code, 1);
        assert!(r.err.starts_with("error [not_found]: "), "{}", r.err);
        assert_eq!(
            run_with(&["--database-url", &url, "apikey", "revoke", "nope"], "").code,
            1
        );
        assert_eq!(parse_err_code(&["apikey", "create"]), 2);

        let _ = std::fs::remove_dir_all(dir);
    }
}
