//! Completion callbacks: a task's `callback_url` receives the task's end (answered on any
//! channel, timed out, cancelled, verification exhausted) as the same signed `task.ended` event
//! webhooks get, through the same outbox (a row `(task, "callback", url, "ended")` written by
//! the transaction that ends the task).
//!
//! A URL is only ever POSTed to when this server's allow-list permits it. The list is
//! `[callbacks] allow` / `INLOOP_CALLBACK_ALLOW`: entries `scheme://host[:port][/path]`, where
//! the scheme, host and port must equal the URL's (no port: the scheme's default; `:` or `:*`
//! after the host: any port) and the path is a prefix of the URL's path on a segment boundary
//! (`/hooks` allows `/hooks` and `/hooks/x`, not `/hooksmith`; `/hooks/` allows only below
//! it). URLs are compared after WHATWG normalization (lower-case host, default port dropped,
//! `..` resolved), so `https://engine.internal.evil.com` never matches `https://engine.internal`.
//!
//! Who checks what (docs/channels.md):
//! - every surface, at creation ([`normalize`]): an absolute http(s) URL with a host, no
//!   credentials, no fragment, no spaces or control characters, at most [`MAX_URL_BYTES`];
//! - an engine handle that knows the allow-list ([`crate::Engine::with_callback_allow`]: the
//!   REST API of `inloop serve`, hence remote-mode SDKs; the CLI when its configuration has
//!   `[callbacks]`), at creation: a URL the list does not allow is `invalid_argument`;
//! - the dispatcher, before every attempt: a URL its own list does not allow (or any URL, when
//!   callbacks are not configured) fails the delivery at once (`delivery_failed`, naming why);
//!   nothing is sent.

use std::collections::BTreeMap;

use reqwest::Url;
use serde_json::Value;

use super::{Channel, DeliveryError, Job};
use crate::config::CallbacksConfig;
use crate::error::{Error, Result};
use crate::store::outbox;

/// The longest callback URL accepted (after normalization), in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// The environment variable with the allow-list (entries separated by commas or spaces).
pub const ALLOW_ENV: &str = "INLOOP_CALLBACK_ALLOW";
/// The environment variable with the signing secret (`whsec_...`).
pub const SECRET_ENV: &str = "INLOOP_CALLBACK_SECRET";

/// Checks a `callback_url` as given at creation and returns it normalized (the form that is
/// stored, matched and POSTed to). Errors are [`Error::InvalidArgument`] naming the problem.
pub fn normalize(url: &str) -> Result<String> {
    let bad = |m: String| Error::InvalidArgument(format!("callback_url {m}"));
    if url.len() > MAX_URL_BYTES {
        return Err(bad(format!(
            "is {} bytes, over the limit of {MAX_URL_BYTES}",
            url.len()
        )));
    }
    if url.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "must not contain spaces or control characters (percent-encode them)".into(),
        ));
    }
    let parsed =
        Url::parse(url).map_err(|e| bad(format!("{url:?} is not an absolute URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        s => return Err(bad(format!("must be an http or https URL, not {s}:"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("{url:?} has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "must not carry credentials (user:password@); the events are signed instead".into(),
        ));
    }
    if parsed.fragment().is_some() {
        return Err(bad(format!(
            "{url:?} has a #fragment, which is never sent: remove it"
        )));
    }
    let normalized = parsed.to_string();
    if normalized.len() > MAX_URL_BYTES {
        return Err(bad(format!(
            "is {} bytes once normalized, over the limit of {MAX_URL_BYTES}",
            normalized.len()
        )));
    }
    Ok(normalized)
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// One allowed prefix: `scheme://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    scheme: String,
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    /// Normalized, starting with `/`; `/` allows every path.
    path: String,
}

impl AllowEntry {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> std::result::Result<AllowEntry, String> {
        let e = entry.trim();
        if e.is_empty() {
            return Err("an entry is empty".into());
        }
        if e.len() > MAX_URL_BYTES || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{e:?}: spaces, control characters or over {MAX_URL_BYTES} bytes"
            ));
        }
        let Some((scheme, rest)) = e.split_once("://") else {
            return Err(format!(
                "{e:?} must look like https://host[:port][/path-prefix]"
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{e:?}: the scheme must be http or https"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.contains(['?', '#']) {
            return Err(format!(
                "{e:?}: an entry is a prefix of scheme, host, port and path; no query or fragment"
            ));
        }
        if authority.contains('@') {
            return Err(format!("{e:?}: no user:password@ in an entry"));
        }
        // `host:` or `host:*`: any port.
        let (authority, any_port) = if let Some(a) = authority.strip_suffix(":*") {
            (a, true)
        } else if let Some(a) = authority.strip_suffix(':') {
            (a, true)
        } else {
            (authority, false)
        };
        if authority.is_empty() {
            return Err(format!("{e:?} has no host"));
        }
        let tail = if tail.is_empty() { "/" } else { tail };
        let url = Url::parse(&format!("{scheme}://{authority}{tail}"))
            .map_err(|err| format!("{e:?} is not a URL prefix: {err}"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{e:?} has no host"))?
            .to_string();
        if scheme == "http" && !is_loopback(&url) {
            return Err(format!(
                "{e:?} must use https (plain http is allowed for loopback only, as for webhooks)"
            ));
        }
        Ok(AllowEntry {
            scheme,
            host,
            port: if any_port {
                None
            } else {
                url.port_or_known_default()
            },
            path: url.path().to_string(),
        })
    }

    /// Whether `url` (parsed, so normalized) falls under this entry.
    pub fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.host_str() != Some(self.host.as_str()) {
            return false;
        }
        if let Some(p) = self.port
            && url.port_or_known_default() != Some(p)
        {
            return false;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let path = url.path();
        let prefix = self.path.as_str();
        prefix == "/"
            || path == prefix
            || (path.starts_with(prefix)
                && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/')))
    }
}

impl std::fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}://{}:{p}{}", self.scheme, self.host, self.path),
            None => write!(f, "{}://{}:*{}", self.scheme, self.host, self.path),
        }
    }
}

/// The callback URLs a server delivers to. Empty: none (callbacks off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl AllowList {
    /// Parses every entry; a bad one is an [`Error::Config`] naming it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList> {
        let entries = entries
            .iter()
            .map(|e| {
                AllowEntry::parse(e.as_ref())
                    .map_err(|m| Error::Config(format!("callbacks allow: {m}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AllowList { entries })
    }

    /// No entry: every callback is refused.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }

    /// Whether `url` may be POSTed to: a URL that does not parse, or carries credentials or a
    /// non-http(s) scheme, never may.
    pub fn allows(&self, url: &str) -> bool {
        match Url::parse(url) {
            Ok(u) => self.entries.iter().any(|e| e.matches(&u)),
            Err(_) => false,
        }
    }

    /// [`AllowList::allows`] as a creation check: [`Error::InvalidArgument`] saying why not
    /// (the list itself is not revealed).
    pub fn check(&self, url: &str) -> Result<()> {
        if self.is_empty() {
            return Err(Error::InvalidArgument(
                "callback_url: this server delivers no callbacks (its operator sets [callbacks] \
                 allow and secret, or INLOOP_CALLBACK_ALLOW and INLOOP_CALLBACK_SECRET)"
                    .into(),
            ));
        }
        if self.allows(url) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "callback_url {url} is not allowed by this server's callback allow-list \
                 ([callbacks] allow / INLOOP_CALLBACK_ALLOW): scheme, host and port must \
                 match an entry exactly and the path must start with its path"
            )))
        }
    }

    /// The allow-list of `[callbacks]` and `INLOOP_CALLBACK_ALLOW` (which wins), or `None`
    /// when neither names any entry. (The CLI uses it to refuse early; the server checks the
    /// whole table with [`resolve`].)
    pub fn from_config(
        file: Option<&CallbacksConfig>,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<AllowList>> {
        let entries = allow_entries(file, env);
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(AllowList::parse(&entries)?))
    }
}

fn allow_entries(file: Option<&CallbacksConfig>, env: &BTreeMap<String, String>) -> Vec<String> {
    match env.get(ALLOW_ENV).filter(|v| !v.trim().is_empty()) {
        Some(v) => v
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => file.map(|f| f.allow.clone()).unwrap_or_default(),
    }
}

/// Checked callback settings: the allow-list and the signing key.
#[derive(Clone)]
pub struct CallbackSettings {
    pub allow: AllowList,
    key: Vec<u8>,
}

impl std::fmt::Debug for CallbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSettings")
            .field("allow", &self.allow)
            .field("key", &"***")
            .finish()
    }
}

impl CallbackSettings {
    /// Checks an allow-list and a `whsec_` secret (the callbacks' own; never a webhook's or a
    /// root key).
    pub fn new<S: AsRef<str>>(allow: &[S], secret: &str) -> Result<CallbackSettings> {
        let allow = AllowList::parse(allow)?;
        let key = super::webhook::parse_secret(secret)
            .map_err(|m| Error::Config(format!("callbacks secret: {m}")))?;
        Ok(CallbackSettings { allow, key })
    }
}

/// `[callbacks]` merged with `INLOOP_CALLBACK_ALLOW` / `INLOOP_CALLBACK_SECRET` (the variables
/// win): `None` when neither is set; both are needed otherwise.
pub(crate) fn resolve(
    file: Option<&CallbacksConfig>,
    env: &BTreeMap<String, String>,
) -> Result<Option<CallbackSettings>> {
    let allow = allow_entries(file, env);
    let secret = env
        .get(SECRET_ENV)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| file.and_then(|f| f.secret.clone()))
        .filter(|s| !s.trim().is_empty());
    match (allow.is_empty(), secret) {
        (true, None) => Ok(None),
        (false, None) => Err(Error::Config(format!(
            "callbacks allow is set but there is no signing secret (callbacks.secret or \
             {SECRET_ENV}; `inloop channels secret` makes one)"
        ))),
        (true, Some(_)) => Err(Error::Config(format!(
            "callbacks secret is set but the allow-list is empty (callbacks.allow or \
             {ALLOW_ENV}): no callback URL would ever be delivered"
        ))),
        (false, Some(secret)) => Ok(Some(CallbackSettings::new(&allow, &secret)?)),
    }
}

/// The callback channel: POSTs a task's end to its `callback_url`, when allowed.
#[derive(Debug)]
pub struct Callbacks {
    settings: CallbackSettings,
    http: reqwest::Client,
}

impl Callbacks {
    pub fn new(settings: CallbackSettings) -> Result<Callbacks> {
        Ok(Callbacks {
            settings,
            http: super::webhook::http_client()?,
        })
    }

    /// The allow-list this channel delivers to.
    pub fn allow(&self) -> &AllowList {
        &self.settings.allow
    }
}

#[async_trait::async_trait]
impl Channel for Callbacks {
    async fn deliver(&self, job: &Job<'_>) -> std::result::Result<Option<Value>, DeliveryError> {
        if job.event != outbox::ENDED {
            return Err(DeliveryError::permanent(
                "a callback carries only the task's end; nothing was sent",
            ));
        }
        if job.task.callback_url.as_deref() != Some(job.target) {
            return Err(DeliveryError::permanent(
                "this delivery's URL is not the task's callback_url; nothing was sent",
            ));
        }
        if !self.settings.allow.allows(job.target) {
            return Err(DeliveryError::permanent(format!(
                "callback URL {} is not allowed by this server's callback allow-list \
                 ([callbacks] allow / {ALLOW_ENV}); nothing was sent",
                job.target
            )));
        }
        let url = Url::parse(job.target)
            .map_err(|e| DeliveryError::permanent(format!("callback URL {:?}: {e}", job.target)))?;
        super::webhook::post_signed(&self.http, &url, &self.settings.key, job).await
    }

    async fn check(&self) -> Result<Vec<String>> {
        let list: Vec<String> = self
            .settings
            .allow
            .entries()
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(vec![format!(
            "callbacks -> {} (signed; nothing to connect to until a task names a URL)",
            list.join(", ")
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    #[test]
    fn host_port_and_path_must_match_exactly() {
        let a = allow(&["https://engine.internal/hooks/", "http://127.0.0.1:"]);
        for ok in [
            "https://engine.internal/hooks/",
            "https://engine.internal/hooks/done?task=1",
            "https://ENGINE.internal:443/hooks/x",
            "http://127.0.0.1:9999/anything",
            "http://127.0.0.1/",
        ] {
            assert!(a.allows(&normalize(ok).unwrap()), "{ok}");
        }
        for bad in [
            "https://engine.internal.evil.com/hooks/",
            "https://evil.com/https://engine.internal/hooks/",
            "https://engine.internal@evil.com/hooks/",
            "https://engine.internal:8443/hooks/x",
            "http://engine.internal/hooks/x",
            "https://engine.internal/hooks",
            "https://engine.internal/hooksmith/",
            "https://engine.internal/hooks/../admin",
            "https://engine.internal/hooks%2f..%2fadmin",
            "https://engine.internal./hooks/",
            "https://127.0.0.1:9999/",
            "http://127.0.0.2:9999/",
            "http://localhost:9999/",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        // No trailing slash: the path and everything below it, on a segment boundary.
        let b = allow(&["https://engine.internal:8443/hooks"]);
        assert!(b.allows("https://engine.internal:8443/hooks"));
        assert!(b.allows("https://engine.internal:8443/hooks/a"));
        assert!(!b.allows("https://engine.internal:8443/hooksmith"));
        assert!(!b.allows("https://engine.internal/hooks"));
        // `:*` is any port too; a host alone is every path on the default port.
        let c = allow(&["https://engine.internal:*", "https://other.internal"]);
        assert!(c.allows("https://engine.internal:1234/x"));
        assert!(c.allows("https://other.internal/x/y"));
        assert!(!c.allows("https://other.internal:444/x"));
        // IPv6 loopback.
        let d = allow(&["http://[::1]:"]);
        assert!(d.allows("http://[::1]:8080/cb"));
        assert!(!AllowList::default().allows("https://engine.internal/"));
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        for (entry, why) in [
            ("engine.internal/hooks", "must look like"),
            ("ftp://engine.internal/", "http or https"),
            ("http://engine.internal/", "https"),
            ("https://engine.internal/hooks?x=1", "no query"),
            ("https://u:p@engine.internal/", "user:password"),
            ("https:///hooks", "no host"),
            ("", "empty"),
        ] {
            let e = AllowEntry::parse(entry).unwrap_err();
            assert!(e.contains(why), "{entry}: {e}");
        }
        let e = AllowList::parse(&["https://ok.internal/", "gopher://x"]).unwrap_err();
        assert_eq!(e.code(), "config");
        assert!(e.to_string().contains("gopher"), "{e}");
    }

    #[test]
    fn callback_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize("https://Engine.Internal:443/a/./b/../c?x=1").unwrap(),
            "https://engine.internal/a/c?x=1"
        );
        for (url, why) in [
            ("", "empty"),
            ("/relative/path", "absolute URL"),
            ("ftp://engine.internal/x", "http or https"),
            ("javascript:alert(1)", "http or https"),
            ("https://u:p@engine.internal/", "credentials"),
            ("https://engine.internal/x#frag", "fragment"),
            ("https://engine.internal/a b", "spaces"),
            ("https://engine.internal/a\nb", "control"),
            ("https://", "absolute URL"),
        ] {
            let e = normalize(url).unwrap_err();
            assert_eq!(e.code(), "invalid_argument");
            assert!(e.to_string().contains(why), "{url:?}: {e}");
        }
        let long = format!("https://engine.internal/{}", "a".repeat(MAX_URL_BYTES));
        assert!(normalize(&long).unwrap_err().to_string().contains("2048"));
    }

    #[test]
    fn settings_need_both_halves() {
        let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(resolve(None, &env(&[])).unwrap().is_none());
        let e = resolve(None, &env(&[(ALLOW_ENV, "https://x.internal/")])).unwrap_err();
        assert!(e.to_string().contains(SECRET_ENV), "{e}");
        let secret = super::super::webhook::generate_secret();
        let e = resolve(None, &env(&[(SECRET_ENV, &secret)])).unwrap_err();
        assert!(e.to_string().contains("allow"), "{e}");
        let e = resolve(
            None,
            &env(&[(ALLOW_ENV, "https://x.internal/"), (SECRET_ENV, "hunter2")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("whsec_"), "{e}");
        // The variables win over the file; entries split on commas and spaces.
        let file = CallbacksConfig {
            allow: vec!["https://file.internal/".into()],
            secret: Some(secret.clone()),
        };
        let s = resolve(
            Some(&file),
            &env(&[(ALLOW_ENV, "https://a.internal/, http://127.0.0.1:")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.allow.entries().len(), 2);
        assert!(s.allow.allows("http://127.0.0.1:5/x"));
        assert!(!s.allow.allows("https://file.internal/"));
        let s = resolve(Some(&file), &env(&[])).unwrap().unwrap();
        assert!(s.allow.allows("https://file.internal/x"));
        assert!(!format!("{s:?}").contains(&secret));
    }
}
