//! What every response carries, whatever route produced it (API, dashboard page, redirect,
//! static asset, error): the browser security headers, and `Secure` on every cookie when the
//! request came over TLS. Behind a TLS-terminating proxy the connection is plain HTTP, so the
//! proxy's `X-Forwarded-Proto` / `X-Forwarded-For` are believed only when the peer is one of
//! the configured trusted proxies (`trusted_proxies`, docs/deployment.md); from anyone else
//! they are ignored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{Error, Result};

/// The dashboard's Content-Security-Policy: no inline script or style, nothing from elsewhere,
/// no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src \
    'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors \
    'none'; base-uri 'none'; object-src 'none'";

/// The environment variable of the trusted proxies (comma-separated addresses or CIDRs).
pub const TRUSTED_PROXIES_ENV: &str = "INLOOP_TRUSTED_PROXIES";

/// Addresses (`10.0.0.5`) and networks (`10.0.0.0/8`, `fd00::/8`) of the reverse proxies
/// whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `"127.0.0.1, 10.0.0.0/8"`.
    ///
    /// ```
    /// use inloop_core::server::hardening::TrustedProxies;
    /// let t = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
    /// assert!(t.trusts("10.1.2.3".parse().unwrap()));
    /// assert!(!t.trusts("192.168.0.1".parse().unwrap()));
    /// ```
    pub fn parse(entries: &[String]) -> Result<TrustedProxies> {
        let mut out = Vec::new();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bad = || {
                Error::Config(format!(
                    "trusted proxy {e:?} is not an IP address or a network (10.0.0.0/8)"
                ))
            };
            let (ip, bits) = match e.split_once('/') {
                Some((ip, bits)) => {
                    let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
                    let bits: u8 = bits.trim().parse().map_err(|_| bad())?;
                    (ip, bits)
                }
                None => {
                    let ip: IpAddr = e.parse().map_err(|_| bad())?;
                    (ip, if ip.is_ipv4() { 32 } else { 128 })
                }
            };
            if bits > if ip.is_ipv4() { 32 } else { 128 } {
                return Err(bad());
            }
            out.push((ip, bits));
        }
        Ok(TrustedProxies(out))
    }

    /// The setting: `INLOOP_TRUSTED_PROXIES` (comma-separated) wins over the file's
    /// `trusted_proxies` list.
    pub fn resolve(file: &[String]) -> Result<TrustedProxies> {
        match std::env::var(TRUSTED_PROXIES_ENV) {
            Ok(v) => {
                let entries: Vec<String> = v.split(',').map(str::to_string).collect();
                TrustedProxies::parse(&entries)
            }
            Err(_) => TrustedProxies::parse(file),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, bits)| in_network(ip, canonical(*net), *bits))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits as u32)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits as u32)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// How the middleware decides.
pub(super) struct Hardening {
    pub proxies: TrustedProxies,
    /// The public URL is https: cookies are always `Secure`.
    pub always_secure: bool,
}

/// The client behind a trusted proxy: the rightmost `X-Forwarded-For` entry that is not
/// itself a trusted proxy (entries further left are whatever the client claimed).
fn forwarded_client(headers: &HeaderMap, proxies: &TrustedProxies) -> Option<IpAddr> {
    let list: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()?;
    list.into_iter().rev().find(|ip| !proxies.trusts(*ip))
}

/// The middleware (see the module docs).
pub(super) async fn harden(
    State(h): State<Arc<Hardening>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let from_proxy = peer.is_some_and(|p| h.proxies.trusts(p.ip()));
    let mut tls = h.always_secure;
    if from_proxy {
        let proto = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase());
        tls |= proto.as_deref() == Some("https");
        // Sign-in throttling and logs see the client, not the proxy.
        if let (Some(client), Some(p)) = (forwarded_client(req.headers(), &h.proxies), peer) {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(client, p.port())));
        }
    }
    let may_leave_body = req.version() <= axum::http::Version::HTTP_11
        && (req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"));
    let mut res = next.run(req).await;
    // A refusal may leave the request's body unread; hyper then closes the connection if the
    // rest of the body has not arrived yet, without saying so, and a client that pooled it
    // fails its next request (IncompleteMessage). Announce the close instead.
    if may_leave_body && !res.status().is_success() {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let headers = res.headers_mut();
    set_security_headers(headers);
    if tls {
        secure_cookies(headers);
    }
    res
}

/// The browser security headers (a page's own CSP, if it set one, is kept).
pub fn set_security_headers(h: &mut HeaderMap) {
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// Adds `Secure` to every `Set-Cookie` that lacks it.
fn secure_cookies(h: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    h.remove(header::SET_COOKIE);
    for c in cookies {
        let secured = match c.to_str() {
            Ok(s)
                if !s
                    .split(';')
                    .any(|a| a.trim().eq_ignore_ascii_case("secure")) =>
            {
                HeaderValue::from_str(&format!("{s}; Secure")).unwrap_or(c)
            }
            _ => c,
        };
        h.append(header::SET_COOKIE, secured);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into(), " 192.168.1.7 ".into()])
            .unwrap();
        assert!(t.trusts("10.255.0.1".parse().unwrap()));
        assert!(t.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert!(t.trusts("::1".parse().unwrap()));
        assert!(t.trusts("192.168.1.7".parse().unwrap()));
        assert!(!t.trusts("192.168.1.8".parse().unwrap()));
        assert!(!t.trusts("11.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["example.com".into()]).is_err());
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn the_forwarded_client_is_the_rightmost_untrusted_entry() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        assert_eq!(
            forwarded_client(&h, &t),
            Some("203.0.113.9".parse().unwrap())
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(forwarded_client(&h, &t), None);
    }

    #[test]
    fn cookies_become_secure_once() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("a=1; HttpOnly"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2; Secure"));
        secure_cookies(&mut h);
        let v: Vec<&str> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(v, ["a=1; HttpOnly; Secure", "b=2; Secure"]);
    }
}
