//! `inloop mcp`: the MCP server with the `ask_human` tool. The server is written on the `mcp`
//! Python SDK and ships in the Python package (`inloop.mcp`); this command runs it with the
//! same arguments, so that the Rust binary and the Python console script offer one CLI.
//!
//! ```text
//! inloop mcp [--transport stdio|http] [--listen HOST:PORT] [--db URL] [--namespace NS]
//! INLOOP_PYTHON=/path/to/python inloop --database-url sqlite:inloop.db mcp
//! ```
//!
//! Python is `$INLOOP_PYTHON`, else `python3` on the `PATH`. The global `--database-url`,
//! `--namespace` and `--config` values reach the server as `INLOOP_DATABASE_URL` and
//! `INLOOP_NAMESPACE`. When Python cannot be started, or `inloop.mcp` cannot be imported
//! there, the command fails with `error [mcp_unavailable]` and says how to install it.

use std::ffi::{OsStr, OsString};
use std::process::Command as Process;

use clap::Args;

use super::failure::Failure;

/// The install line every `mcp_unavailable` hint gives.
const INSTALL: &str = "pip install 'inloop[mcp]'";

/// Imports the server and runs it with the arguments after `-c`; an import failure prints the
/// CLI's own error format (the message is written here, in Rust, and passed in `argv`).
const BOOTSTRAP: &str = "import sys\n\
try:\n    from inloop.mcp import main\n\
except ImportError as e:\n    \
sys.stderr.write(sys.argv[1] % (sys.executable, e) + '\\n')\n    sys.exit(1)\n\
sys.exit(main(sys.argv[2:]))\n";

/// `inloop mcp ARGS...`: every argument goes to the Python server unchanged (its own
/// `--help` lists them).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(super) struct McpArgs {
    /// Arguments of the server: --transport stdio|http, --listen HOST:PORT, --db URL,
    /// --namespace NS, --help
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub(super) args: Vec<String>,
}

/// What `inloop mcp` runs: a Python interpreter, its arguments and the variables it adds.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Launch {
    pub(super) python: OsString,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(&'static str, String)>,
}

/// The launch for `args`: Python from `inloop_python` (the value of `INLOOP_PYTHON`, empty
/// meaning unset) else `python3`; the resolved database URL and namespace, when the command
/// line or the configuration file gave them, as environment variables.
pub(super) fn launch(
    args: &McpArgs,
    inloop_python: Option<OsString>,
    database_url: Option<String>,
    namespace: Option<String>,
) -> Launch {
    let python = inloop_python
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    let import_error = format!(
        "error [mcp_unavailable]: `inloop mcp` runs the MCP server of the inloop Python \
         package, and importing inloop.mcp with %s failed (%s)\nhint: install it into that \
         Python with `{INSTALL}`, or point INLOOP_PYTHON at a Python that has it"
    );
    let mut argv = vec!["-c".to_string(), BOOTSTRAP.to_string(), import_error];
    argv.extend(args.args.iter().cloned());
    let mut env = Vec::new();
    if let Some(url) = database_url {
        env.push(("INLOOP_DATABASE_URL", url));
    }
    if let Some(ns) = namespace {
        env.push(("INLOOP_NAMESPACE", ns));
    }
    Launch {
        python,
        args: argv,
        env,
    }
}

/// Runs the server: on Unix the Python process replaces this one (signals and stdio go
/// straight to it); elsewhere it is a child whose exit code is returned. Returns only when
/// Python could not be started (or, off Unix, when the child ended).
pub(super) fn run(launch: Launch) -> Result<i32, Failure> {
    let mut cmd = Process::new(&launch.python);
    cmd.args(&launch.args);
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(cannot_start(&launch.python, &e))
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(status) => Ok(status.code().unwrap_or(1)),
            Err(e) => Err(cannot_start(&launch.python, &e)),
        }
    }
}

pub(super) fn cannot_start(python: &OsStr, e: &std::io::Error) -> Failure {
    Failure::Cli {
        code: "mcp_unavailable",
        message: format!(
            "`inloop mcp` runs the MCP server of the inloop Python package, and Python ({}) \
             could not be started: {e}",
            python.to_string_lossy()
        ),
        hint: Some(format!(
            "install Python 3.10 or newer and `{INSTALL}`, or set INLOOP_PYTHON to the \
             Python that has the inloop package"
        )),
    }
}
