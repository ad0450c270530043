//! Where the database is: one rule for the CLI, Python and TypeScript.
//!
//! An explicit URL wins, then `INLOOP_DATABASE_URL`, then the embedded default: the SQLite file
//! `.inloop/inloop.db` under the current directory, created on first use.
//!
//! The SDKs may use an inloop server instead of a database ([`resolve_target`]): an explicit
//! server URL wins, then an explicit database URL, then `INLOOP_URL` (with `INLOOP_API_KEY`),
//! then the database rule above.

use std::path::Path;

use crate::error::{Error, Result};

/// The environment variable naming the database.
pub const DATABASE_URL_ENV: &str = "INLOOP_DATABASE_URL";
/// The default SQLite file, relative to the current directory.
pub const DEFAULT_SQLITE_PATH: &str = ".inloop/inloop.db";

/// The environment variable naming an inloop server (remote mode).
pub const URL_ENV: &str = "INLOOP_URL";
/// The environment variable holding the API key for [`URL_ENV`].
pub const API_KEY_ENV: &str = "INLOOP_API_KEY";

/// What an SDK talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A database URL (a relative SQLite path made absolute).
    Database(String),
    /// An inloop server and the API key to use with it.
    Remote { url: String, api_key: String },
}

/// Chooses between a server and a database: explicit `url` > explicit `database_url` >
/// `INLOOP_URL` > `INLOOP_DATABASE_URL` > the default SQLite file. A server needs an API key
/// (`api_key`, else `INLOOP_API_KEY`); an API key without a server is a mistake, not ignored.
pub fn resolve_target(
    database_url: Option<&str>,
    url: Option<&str>,
    api_key: Option<&str>,
) -> Result<Target> {
    resolve_target_with(database_url, url, api_key, |k| std::env::var(k).ok())
}

fn resolve_target_with(
    database_url: Option<&str>,
    url: Option<&str>,
    api_key: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Target> {
    let given = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    let env_var = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let explicit_key = given(api_key);
    let (url, from_env) = match (given(url), given(database_url)) {
        (Some(u), _) => (Some(u), false),
        (None, Some(_)) => (None, false),
        (None, None) => match env_var(URL_ENV) {
            Some(u) => (Some(u), true),
            None => (None, false),
        },
    };
    match url {
        Some(url) => {
            let Some(api_key) = explicit_key.or_else(|| env_var(API_KEY_ENV)) else {
                let whence = if from_env { URL_ENV } else { "url" };
                return Err(Error::Config(format!(
                    "{whence} names an inloop server ({url}) but no API key is given: set                      {API_KEY_ENV} (create a key with `inloop apikey create --name NAME`)"
                )));
            };
            Ok(Target::Remote { url, api_key })
        }
        None => {
            if explicit_key.is_some() {
                return Err(Error::Config(
                    "an API key was given without a server URL (url or INLOOP_URL)".into(),
                ));
            }
            Ok(Target::Database(resolve_database_url(database_url)?))
        }
    }
}

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

    #[test]
    fn server_or_database() {
        let none = |_: &str| None;
        let remote = |url: &str, key: &str| Target::Remote {
            url: url.into(),
            api_key: key.into(),
        };
        let env = |k: &str| match k {
            URL_ENV => Some("http://env:1".to_string()),
            API_KEY_ENV => Some("ilk_env".to_string()),
            _ => None,
        };
        let url_no_key = |k: &str| (k == URL_ENV).then(|| "http://env:1".to_string());
        let db = "postgres://h/db";
        let r = |d, u, k, e: &dyn Fn(&str) -> Option<String>| resolve_target_with(d, u, k, e);
        // explicit url > explicit database url > INLOOP_URL > database rule
        assert_eq!(
            r(Some(db), Some("http://x:1"), Some("ilk_a"), &none).unwrap(),
            remote("http://x:1", "ilk_a")
        );
        assert_eq!(
            r(None, Some("http://x:1"), None, &env).unwrap(),
            remote("http://x:1", "ilk_env")
        );
        assert_eq!(
            r(Some(db), None, None, &env).unwrap(),
            Target::Database(db.into())
        );
        assert_eq!(
            r(None, None, None, &env).unwrap(),
            remote("http://env:1", "ilk_env")
        );
        assert_eq!(
            r(None, None, Some("ilk_a"), &url_no_key).unwrap(),
            remote("http://env:1", "ilk_a")
        );
        // a server without a key, or a key without a server: configuration errors
        let e = r(None, None, None, &url_no_key).unwrap_err();
        assert_eq!(e.code(), "config");
        assert!(e.to_string().contains("INLOOP_API_KEY"), "{e}");
        assert_eq!(
            r(None, Some("http://x:1"), None, &none).unwrap_err().code(),
            "config"
        );
        assert_eq!(
            r(Some(db), None, Some("k"), &none).unwrap_err().code(),
            "config"
        );
        assert_eq!(
            r(Some(db), None, None, &none).unwrap(),
            Target::Database(db.into())
        );
    }
}

/// The environment variable naming the optional TOML configuration file.
pub const CONFIG_ENV: &str = "INLOOP_CONFIG";
/// Where `inloop serve` listens by default (loopback only).
pub const DEFAULT_BIND: &str = "127.0.0.1:7070";

/// The optional TOML file (`--config` / `INLOOP_CONFIG`). Every key is optional and below a
/// flag or an environment variable in precedence: flag > `INLOOP_*` > file > default.
///
/// ```toml
/// database_url = "postgres://inloop@db/inloop"
/// namespace = "default"
/// bind = "0.0.0.0:7070"
/// public_url = "https://inloop.example.com"
/// log = "info"
/// log_format = "json"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub namespace: Option<String>,
    pub bind: Option<String>,
    pub public_url: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    /// Reverse proxies whose `X-Forwarded-Proto` / `X-Forwarded-For` are believed (addresses
    /// or networks; `INLOOP_TRUSTED_PROXIES` wins). Empty: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How long a replica's claim on the first-run setup link lasts without renewal, in seconds
    /// (`INLOOP_SETUP_LEASE_SECS` wins; default 60): another replica takes the link over
    /// within 4/3 of it after the holder dies.
    pub setup_lease_secs: Option<u64>,
    /// Notification channels and the outbox (`[channels]`, see [`ChannelsConfig`]).
    pub channels: Option<ChannelsConfig>,
    /// Completion callbacks (`[callbacks]`, see [`CallbacksConfig`]).
    pub callbacks: Option<CallbacksConfig>,
}

/// The `[callbacks]` table: which `callback_url`s this server delivers to, and the secret
/// their events are signed with. Both are needed, or neither (callbacks off); the
/// environment variables win. Checked by [`crate::channels::callback::CallbackSettings`].
///
/// ```toml
/// [callbacks]
/// # scheme://host[:port][/path-prefix]; ":" or ":*" after the host allows any port
/// allow = ["https://engine.internal/hooks/", "http://127.0.0.1:"]   # INLOOP_CALLBACK_ALLOW
/// secret = "whsec_..."                                              # INLOOP_CALLBACK_SECRET
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    pub secret: Option<String>,
}

/// The `[channels]` table: the outbox's retry policy and each channel's credentials. Every key
/// has an environment variable that wins over it; `docs/channels.md` lists them in one table.
/// [`crate::channels::Settings::resolve`] checks the whole and refuses a misconfiguration.
///
/// ```toml
/// [channels]
/// retry_horizon_secs = 86400        # INLOOP_CHANNEL_RETRY_HORIZON_SECS
/// [channels.webhooks.billing]       # notify = ["webhook:billing"]
/// url = "https://billing.example.com/hooks/inloop"   # INLOOP_WEBHOOK_BILLING_URL
/// secret = "whsec_..."                               # INLOOP_WEBHOOK_BILLING_SECRET
/// [channels.email]
/// smtp_url = "smtps://user:pass@smtp.example.com"    # INLOOP_SMTP_URL
/// from = "inloop <inloop@example.com>"               # INLOOP_EMAIL_FROM
/// link_keys = ["k2:...", "k1:..."]                   # INLOOP_LINK_KEYS (comma-separated)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    pub retry_horizon_secs: Option<u64>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_secs: Option<u64>,
    pub lease_secs: Option<u64>,
    pub poll_ms: Option<u64>,
    #[serde(default)]
    pub webhooks: std::collections::BTreeMap<String, WebhookConfig>,
    pub email: Option<EmailConfig>,
    pub slack: Option<SlackConfig>,
}

/// The `[channels.slack]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub bot_token: Option<String>,
    pub signing_secret: Option<String>,
    /// The Web API base (default `https://slack.com/api`).
    pub api_url: Option<String>,
    /// Slack user id -> inloop user name (else the Slack profile e-mail is used).
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, String>,
}

/// One `[channels.webhooks.NAME]` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: Option<String>,
    pub secret: Option<String>,
}

/// The `[channels.email]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    /// `KID:SECRET` entries; the first signs new links, all verify.
    #[serde(default)]
    pub link_keys: Vec<String>,
    pub link_ttl_secs: Option<u64>,
}

impl FileConfig {
    /// Reads and parses the file; a missing file, a syntax error or an unknown key is a
    /// clear [`Error::Config`].
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string().trim().to_string()))
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn parses_known_keys_and_refuses_unknown_ones() {
        let c = FileConfig::parse("bind = \"0.0.0.0:8080\"\npublic_url = \"https://x\"\n").unwrap();
        assert_eq!(c.bind.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(c.public_url.as_deref(), Some("https://x"));
        let e = FileConfig::parse("bnd = 1").unwrap_err().to_string();
        assert!(e.contains("unknown field `bnd`"), "{e}");
        assert!(FileConfig::parse("bind = ").is_err());
        assert!(FileConfig::load(Path::new("/nonexistent/inloop.toml")).is_err());
    }
}
