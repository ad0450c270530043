//! Where the database is: one rule for the CLI, Python and TypeScript.
//!
//! An explicit URL wins, then `INLOOP_DATABASE_URL`, then the embedded default: the SQLite file
//! `.inloop/inloop.db` under the current directory, created on first use.

use std::path::Path;

use crate::error::{Error, Result};

/// The environment variable naming the database.
pub const DATABASE_URL_ENV: &str = "INLOOP_DATABASE_URL";
/// The default SQLite file, relative to the current directory.
pub const DEFAULT_SQLITE_PATH: &str = ".inloop/inloop.db";

/// Resolves the database URL by the rule above. A relative SQLite path is made absolute
/// against the current directory, so it does not move if the process changes directory.
pub fn resolve_database_url(explicit: Option<&str>) -> Result<String> {
    let chosen = match explicit.map(str::trim).filter(|s| !s.is_empty()) {
        Some(url) => url.to_string(),
        None => match std::env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => format!("sqlite:{DEFAULT_SQLITE_PATH}"),
        },
    };
    absolutize_sqlite(&chosen)
}

fn absolutize_sqlite(url: &str) -> Result<String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(url.to_string());
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.starts_with(':') || rest.is_empty() {
        if rest.is_empty() {
            return Err(Error::Config(
                "a SQLite URL needs a path: sqlite:PATH".into(),
            ));
        }
        return Ok(url.to_string()); // sqlite::memory:
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = Path::new(path);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::Config(format!("cannot read the current directory: {e}")))?
            .join(path)
    };
    Ok(match query {
        Some(q) => format!("sqlite://{}?{q}", abs.display()),
        None => format!("sqlite://{}", abs.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_and_relative_paths_become_absolute() {
        let url = resolve_database_url(Some("sqlite:data/x.db")).unwrap();
        assert!(url.starts_with("sqlite:///"), "{url}");
        assert!(url.ends_with("/data/x.db"), "{url}");
        assert_eq!(
            resolve_database_url(Some("postgres://h/db")).unwrap(),
            "postgres://h/db"
        );
        assert_eq!(
            resolve_database_url(Some("sqlite:///tmp/a.db")).unwrap(),
            "sqlite:///tmp/a.db"
        );
        assert!(resolve_database_url(Some("sqlite:")).is_err());
    }
}
