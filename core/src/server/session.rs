//! The dashboard's sign-in state: session cookies, CSRF tokens and login throttling (kept in
//! the database, shared by replicas).
//!
//! A session is an opaque random token in an `HttpOnly`, `SameSite=Lax` cookie (plus `Secure`
//! when the public URL is https); only its SHA-256 is stored. Every state-changing form
//! carries the session's CSRF token (synchronizer pattern); the sign-in and setup forms, which
//! run before a session exists, use a double-submit cookie instead. Requests whose `Origin`
//! names another site are refused outright.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};

use crate::error::Result;
use crate::schema::sha256_hex;
use crate::store::Store;
use crate::users::same_secret;

/// The session cookie.
pub const SESSION_COOKIE: &str = "inloop_session";
/// The pre-session CSRF cookie (sign-in and setup forms).
pub const CSRF_COOKIE: &str = "inloop_csrf";

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value. `max_age` `Some(0)` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let same_site = if name == CSRF_COOKIE { "Strict" } else { "Lax" };
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    // Tokens are URL-safe base64: always a valid header value.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a submitted CSRF token matches the expected one (constant time, never empty).
pub fn csrf_ok(expected: &str, submitted: Option<&str>) -> bool {
    matches!(submitted, Some(s) if !expected.is_empty() && same_secret(expected, s))
}

/// Whether the request's `Origin` (when sent) is this server: the `Host` it was sent to, or
/// the configured public origin (behind a proxy that rewrites `Host`). A cross-site form post
/// is refused even before its CSRF token is looked at; `Sec-Fetch-Site: cross-site` too.
pub fn same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if origin == "null" {
        return false;
    }
    if public_origin.is_some_and(|p| p.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

/// The origin (`scheme://host[:port]`) of a URL, for [`same_origin`].
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// Failed sign-ins per login name and per client address in a sliding window; over the limit,
/// sign-in is refused (without checking the password) until the window moves on. The
/// failures are rows in the database (`inloop_login_failures`, keyed by the SHA-256 of the
/// name or address), so every replica on it counts the same failures; each row is dropped
/// once its window has passed.
pub struct LoginThrottle {
    window: Duration,
    per_login: usize,
    per_address: usize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(Duration::from_secs(15 * 60), 5, 20)
    }
}

impl LoginThrottle {
    pub fn new(window: Duration, per_login: usize, per_address: usize) -> Self {
        LoginThrottle {
            window,
            per_login,
            per_address,
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }

    fn login_key(login: &str) -> String {
        sha256_hex(&format!("login:{}", login.trim().to_ascii_lowercase()))
    }

    fn keys(login: &str, addr: Option<IpAddr>) -> [(String, bool); 2] {
        [
            (Self::login_key(login), true),
            (
                sha256_hex(&format!(
                    "addr:{}",
                    addr.map(|a| a.to_string()).unwrap_or_default()
                )),
                false,
            ),
        ]
    }

    /// `Some(wait)` when this sign-in must be refused for `wait`.
    pub async fn check(
        &self,
        store: &Store,
        login: &str,
        addr: Option<IpAddr>,
        now: i64,
    ) -> Result<Option<Duration>> {
        let since = now.saturating_sub(self.window_ms()).saturating_add(1);
        let mut wait = None::<Duration>;
        for (key, is_login) in Self::keys(login, addr) {
            let limit = if is_login {
                self.per_login
            } else {
                self.per_address
            };
            let (n, oldest) = store.login_failures(&key, since).await?;
            if usize::try_from(n).unwrap_or(usize::MAX) >= limit
                && let Some(oldest) = oldest
            {
                let left = self.window_ms().saturating_sub(now.saturating_sub(oldest));
                let w = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                wait = Some(wait.map_or(w, |x| x.max(w)));
            }
        }
        Ok(wait)
    }

    /// Records a failed sign-in (under the name and under the address).
    pub async fn failed(
        &self,
        store: &Store,
        login: &str,
        addr: Option<IpAddr>,
        now: i64,
    ) -> Result<()> {
        let keys: Vec<String> = Self::keys(login, addr).into_iter().map(|k| k.0).collect();
        store
            .record_login_failure(&keys, now, now.saturating_add(self.window_ms()))
            .await
    }

    /// A successful sign-in clears the name's failures (not the address's).
    pub async fn succeeded(&self, store: &Store, login: &str) -> Result<()> {
        store.clear_login_failures(&Self::login_key(login)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; inloop_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[test]
    fn origin_checks() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7070"));
        assert!(same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7070"),
        );
        assert!(same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, None));
        assert!(!same_origin(&h, Some("https://inloop.example")));
        // behind a proxy that rewrites Host: the public origin counts
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://inloop.example"),
        );
        assert!(same_origin(&h, Some("https://inloop.example")));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, None));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, None));
        assert_eq!(
            origin_of("https://inloop.example:8443/base?x").as_deref(),
            Some("https://inloop.example:8443")
        );
        assert_eq!(origin_of("nonsense"), None);
    }

    #[test]
    fn csrf_needs_an_exact_nonempty_match() {
        assert!(csrf_ok("abc", Some("abc")));
        assert!(!csrf_ok("abc", Some("abd")));
        assert!(!csrf_ok("abc", None));
        assert!(!csrf_ok("", Some("")));
    }
}
