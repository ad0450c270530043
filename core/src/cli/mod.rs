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
//! inloop mcp [--transport stdio|http] [--listen HOST:PORT] [--db URL] [--namespace NS]
//! ```
//!
//! Errors go to stderr as `error [<code>]: <message>`, where the code is the engine's stable
//! [`Error::code`], or one of the CLI's own: `invalid_json` (an answer or option that is not
//! JSON), `still_pending` (`tasks wait --timeout` ran out), `audit_broken` (`tasks audit`
//! found an altered chain), `io` (the output could not be written).

use std::io::{self, IsTerminal, Read, Write};
use std::str::FromStr;

use clap::Parser;

mod args;
mod channels;
mod failure;
mod input;
mod keys;
mod mcp;
mod output;
mod people;
mod schema_summary;
mod serve;
mod tasks;
#[cfg(test)]
mod tests;

use crate::config::resolve_database_url;
use crate::engine::{Engine, EngineOptions};
use crate::model::{ListFilter, NewTask};
use crate::store::redact_url;
use args::{Cli, Command, JsonArg};
use failure::{Failure, fail, report};
use output::{write_json, write_table};
use tasks::TaskRef;

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
        response: serde_json::Value,
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
        timeout: Option<std::time::Duration>,
        json: bool,
    },
    Create {
        new: Box<NewTask>,
        /// The configured callback allow-list, when there is one: refused early here.
        callback_allow: Option<crate::channels::callback::AllowList>,
        json: bool,
    },
    Serve(Box<serve::ServePlan>),
    Apikey(keys::KeyPlan),
    People(people::PeoplePlan),
}

impl Plan {
    /// Whether the command may create the database (the others need an existing one).
    fn creates_database(&self) -> bool {
        match self {
            Plan::Migrate | Plan::Create { .. } | Plan::Serve(_) => true,
            Plan::Apikey(k) => k.creates_database(),
            Plan::People(p) => p.creates_database(),
            _ => false,
        }
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
    if let Command::Mcp(m) = &cli.command {
        // The Python server resolves the defaults itself; pass on only what was given.
        let database_url = nonempty(cli.database_url.clone()).or(file.database_url);
        let namespace = nonempty(cli.namespace.clone()).or(file.namespace);
        let inloop_python = std::env::var_os("INLOOP_PYTHON");
        return mcp::run(mcp::launch(m, inloop_python, database_url, namespace));
    }
    // An empty INLOOP_NAMESPACE means the default, as an empty INLOOP_DATABASE_URL does.
    let namespace = nonempty(cli.namespace)
        .or_else(|| nonempty(file.namespace.clone()))
        .unwrap_or_else(|| "default".into());
    if let Command::Channels(c) = &cli.command {
        let public_url = std::env::var("INLOOP_PUBLIC_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| file.public_url.clone());
        return channels::run(c, &file, public_url.as_deref(), io);
    }
    let plan = plan(cli.command, &namespace, &file, io)?;
    let database_url = nonempty(cli.database_url).or(file.database_url);
    let url = resolve_database_url(database_url.as_deref())?;
    if !plan.creates_database() {
        check_sqlite_exists(&url)?;
    }
    // The server needs every core; one command needs one thread.
    let runtime = if matches!(plan, Plan::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| fail("internal", format!("cannot start the async runtime: {e}")))?;
    // Traces of the tasks this command touches, when the OTEL_* variables ask for them.
    let traced = crate::telemetry::init_from_env("inloop").map_err(|e| fail("config", e))?;
    let result = runtime.block_on(async {
        let engine = Engine::open(&url, EngineOptions::default()).await?;
        let result = perform(&engine, &url, plan, io).await;
        engine.close().await;
        result
    });
    if traced {
        // The last spans (the server's shutdown, this command's own) are sent before exit.
        crate::telemetry::shutdown();
    }
    result
}

/// Checks the arguments and reads any input, before the database is touched.
fn plan(
    command: Command,
    namespace: &str,
    file: &crate::config::FileConfig,
    io: &mut Io,
) -> Result<Plan, Failure> {
    match command {
        Command::Migrate => Ok(Plan::Migrate),
        Command::Tasks(t) => tasks::plan(t, namespace, file, io),
        Command::Serve(a) => Ok(Plan::Serve(Box::new(serve::plan(a, file)?))),
        Command::Apikey(k) => Ok(Plan::Apikey(keys::plan(k, namespace)?)),
        Command::User(u) => Ok(Plan::People(people::plan_user(u, io)?)),
        Command::Namespace(n) => Ok(Plan::People(people::plan_namespace(n))),
        Command::Channels(_) => unreachable!("`inloop channels` is run before planning"),
        Command::Mcp(_) => unreachable!("`inloop mcp` is run before planning"),
    }
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
            Ok(0)
        }
        Plan::List { filter, json } => tasks::list(engine, filter, json, io).await,
        Plan::Show { task, json } => tasks::show(engine, task, json, io).await,
        Plan::Answer {
            task,
            response,
            by,
            json,
        } => tasks::answer(engine, task, response, by, json, io).await,
        Plan::Cancel {
            task,
            reason,
            by,
            json,
        } => tasks::cancel(engine, task, reason, by, json, io).await,
        Plan::Audit { task, json } => tasks::audit(engine, task, json, io).await,
        Plan::Wait {
            task,
            timeout,
            json,
        } => tasks::wait(engine, task, timeout, json, io).await,
        Plan::Create {
            new,
            callback_allow,
            json,
        } => tasks::create(engine, *new, callback_allow, json, io).await,
        Plan::Serve(s) => serve::perform(engine, url, *s, io).await,
        Plan::Apikey(k) => keys::perform(engine, k, io).await,
        Plan::People(p) => {
            people::perform(engine, p, io).await?;
            Ok(0)
        }
    }
}
