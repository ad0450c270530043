//! Reading a command's input: JSON from an argument, a file (`@PATH`) or stdin, size-limited.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::{Failure, Io, fail};

/// The largest JSON document read from stdin or a file.
const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// Parses JSON text, reporting a syntax error with its position.
pub(super) fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
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
pub(super) fn policy_option(value: Value) -> Result<crate::policy::Policy, Failure> {
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
pub(super) fn json_option(io: &mut Io, flag: &str, value: &str) -> Result<Value, Failure> {
    let text = match value.strip_prefix('@') {
        Some("-") => read_stdin(io, flag)?,
        Some(path) => read_file(Path::new(path), flag)?,
        None => value.to_string(),
    };
    parse_json(flag, &text)
}

pub(super) fn read_stdin(io: &mut Io, what: &str) -> Result<String, Failure> {
    if io.stdin_is_terminal {
        writeln!(
            io.err,
            "reading {what} (JSON) from stdin; finish with Ctrl-D"
        )?;
    }
    read_limited(&mut *io.stdin, what, "stdin")
}

pub(super) fn read_file(path: &Path, what: &str) -> Result<String, Failure> {
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
