//! How a command fails: the [`Failure`] type and the `error [<code>]: <message>` lines.

use std::io;

use super::Io;
use crate::error::{Error, FieldError};

/// Why a command failed.
#[derive(Debug)]
pub(super) enum Failure {
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

pub(super) fn fail(code: &'static str, message: impl Into<String>) -> Failure {
    Failure::Cli {
        code,
        message: message.into(),
        hint: None,
    }
}

/// Prints the failure to stderr; returns the exit code.
pub(super) fn report(failure: Failure, io: &mut Io) -> i32 {
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

pub(super) fn error_line(io: &mut Io, code: &str, message: &str) -> io::Result<()> {
    if io.err_color {
        writeln!(io.err, "\x1b[1;31merror\x1b[0m [{code}]: {message}")
    } else {
        writeln!(io.err, "error [{code}]: {message}")
    }
}

/// The message after `error [code]: `, without a prefix that repeats the code.
pub(super) fn engine_message(e: &Error) -> String {
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

pub(super) fn field_error_lines(errors: &[FieldError]) -> Vec<String> {
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
