//! The dashboard's sign-in state: session cookies, CSRF tokens, login throttling and the
//! first-run setup token.
//!
//! A session is an opaque random token in an `HttpOnly`, `SameSite=Lax` cookie (plus `Secure`
//! when the public URL is https); only its SHA-256 is stored. Every state-changing form
//! carries the session's CSRF token (synchronizer pattern); the sign-in and setup forms, which
//! run before a session exists, use a double-submit cookie instead. Requests whose `Origin`
//! names another site are refused outright.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};

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
/// sign-in is refused (without checking the password) until the window moves on. Kept in
/// memory: each replica throttles on its own (documented).
pub struct LoginThrottle {
    window: Duration,
    per_login: usize,
    per_address: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
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
            failures: Mutex::default(),
        }
    }

    fn keys(login: &str, addr: Option<IpAddr>) -> [(String, bool); 2] {
        [
            (format!("login:{}", login.trim().to_ascii_lowercase()), true),
            (
                format!("addr:{}", addr.map(|a| a.to_string()).unwrap_or_default()),
                false,
            ),
        ]
    }

    /// `Some(wait)` when this sign-in must be refused for `wait`.
    pub fn check(&self, login: &str, addr: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None::<Duration>;
        for (key, is_login) in Self::keys(login, addr) {
            let limit = if is_login {
                self.per_login
            } else {
                self.per_address
            };
            if let Some(q) = map.get_mut(&key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                if q.len() >= limit
                    && let Some(oldest) = q.front()
                {
                    let w = self.window.saturating_sub(now.duration_since(*oldest));
                    wait = Some(wait.map_or(w, |x| x.max(w)));
                }
            }
        }
        wait
    }

    /// Records a failed sign-in.
    pub fn failed(&self, login: &str, addr: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bounded memory under a flood of distinct names: forget windows that ended.
            let window = self.window;
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for (key, _) in Self::keys(login, addr) {
            map.entry(key).or_default().push_back(now);
        }
    }

    /// A successful sign-in clears the name's failures (not the address's).
    pub fn succeeded(&self, login: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("login:{}", login.trim().to_ascii_lowercase()));
    }
}

/// The one-time first-run token of this process (printed as the setup link), while setup is
/// open.
#[derive(Default)]
pub struct SetupToken(Mutex<Option<String>>);

impl SetupToken {
    /// Sets the token (one given in the configuration).
    pub fn set(&self, token: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.to_string());
    }

    pub fn matches(&self, submitted: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            .is_some_and(|t| same_secret(t, submitted))
    }

    /// Used up: the link stops working.
    pub fn consume(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
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

    #[test]
    fn throttle_blocks_after_the_limit_and_success_resets_the_name() {
        let t = LoginThrottle::new(Duration::from_secs(60), 3, 5);
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        for _ in 0..3 {
            assert!(t.check("alice", ip).is_none());
            t.failed("Alice", ip);
        }
        assert!(t.check("alice", ip).is_some());
        assert!(t.check("bob", Some("10.0.0.2".parse().unwrap())).is_none());
        t.succeeded("alice");
        assert!(
            t.check("alice", Some("10.0.0.3".parse().unwrap()))
                .is_none()
        );
        // the address limit holds across names
        t.failed("x", ip);
        t.failed("y", ip);
        assert!(t.check("z", ip).is_some());
    }
}
