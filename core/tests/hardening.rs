//! Browser hardening over HTTP, on a real server: the security headers on every response of
//! every route (signed in and out, pages, redirects, assets, errors, the API), cookies
//! `HttpOnly` + `SameSite` always and `Secure` behind TLS, where `X-Forwarded-Proto` and
//! `X-Forwarded-For` count only from a configured trusted proxy (tested both ways).

mod common;

use std::time::Duration;

use common::{Db, concrete_path, dashboard_sign_in, form_body, serve_engine};
use inloop_core::server::hardening::TrustedProxies;
use inloop_core::server::{DASHBOARD_ROUTES, ROUTES, ServerOptions};
use reqwest::header::HeaderMap;

const PASSWORD: &str = "correct horse battery";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn assert_hardened(h: &HeaderMap, what: &str) {
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "same-origin", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
}

async fn add_admin(engine: &inloop_core::Engine) {
    inloop_core::users::add_user(
        engine,
        "ada",
        None,
        inloop_core::users::Role::Admin,
        PASSWORD,
    )
    .await
    .unwrap();
}

async fn every_response_carries_the_security_headers(db: Db) {
    let engine = db.open().await;
    add_admin(&engine).await;
    let server = serve_engine(engine.clone(), ServerOptions::default()).await;
    let (session, _) = dashboard_sign_in(&server.base, "ada", PASSWORD).await;
    let http = client();
    let mut n = 0;
    for r in ROUTES.iter().chain(DASHBOARD_ROUTES) {
        let url = format!("{}{}", server.base, concrete_path(r.path));
        for cookie in [None, Some(format!("inloop_session={session}"))] {
            for method in [r.method, "DELETE"] {
                let mut req = http.request(method.parse().unwrap(), &url);
                if let Some(c) = &cookie {
                    req = req.header("cookie", c);
                }
                let resp = req.send().await.unwrap();
                let what = format!("{method} {} ({})", r.path, resp.status());
                assert_hardened(resp.headers(), &what);
                n += 1;
            }
        }
    }
    // an unknown path too
    let resp = http
        .get(format!("{}/nope", server.base))
        .send()
        .await
        .unwrap();
    assert_hardened(resp.headers(), "GET /nope");
    eprintln!("hardening: {n} responses checked");
    server.stop().await;
    engine.close().await;
}

/// The `Set-Cookie` values of a response.
fn cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn attr(cookie: &str, name: &str) -> bool {
    cookie.split(';').any(|a| {
        a.trim()
            .split('=')
            .next()
            .unwrap()
            .eq_ignore_ascii_case(name)
    })
}

/// The pre-session CSRF token a sign-in page sets (and its cookies).
async fn login_csrf(
    http: &reqwest::Client,
    base: &str,
    headers: &[(&str, &str)],
) -> (String, Vec<String>) {
    let mut req = http.get(format!("{base}/login"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let page = req.send().await.unwrap();
    let all = cookies(&page);
    let csrf = all[0]
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    (csrf, all)
}

/// Signs in with `headers`, returning the sign-in page's and the sign-in response's cookies.
async fn sign_in_cookies(base: &str, headers: &[(&str, &str)]) -> Vec<String> {
    let http = client();
    let (csrf, mut all) = login_csrf(&http, base, headers).await;
    let mut req = http
        .post(format!("{base}/login"))
        .header("cookie", format!("inloop_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("csrf", &csrf),
            ("username", "ada"),
            ("password", PASSWORD),
            ("next", "/tasks"),
        ]));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 303);
    all.extend(cookies(&r));
    assert!(
        all.iter().any(|c| c.starts_with("inloop_session=")),
        "{all:?}"
    );
    all
}

async fn cookies_are_secure_behind_a_trusted_tls_proxy_only(db: Db) {
    let engine = db.open().await;
    add_admin(&engine).await;
    let tls = [("x-forwarded-proto", "https")];
    // Trusted: the proxy (127.0.0.1 here) says the client spoke https.
    let opts = ServerOptions {
        trusted_proxies: TrustedProxies::parse(&["127.0.0.1".into()]).unwrap(),
        ..Default::default()
    };
    let server = serve_engine(engine.clone(), opts).await;
    for c in sign_in_cookies(&server.base, &tls).await {
        assert!(
            attr(&c, "Secure") && attr(&c, "HttpOnly") && attr(&c, "SameSite"),
            "{c}"
        );
    }
    // The same proxy without the header: plain http, no Secure (the browser would drop it).
    for c in sign_in_cookies(&server.base, &[]).await {
        assert!(
            !attr(&c, "Secure") && attr(&c, "HttpOnly") && attr(&c, "SameSite"),
            "{c}"
        );
    }
    server.stop().await;
    // Untrusted: anyone can send the header; it is ignored.
    for proxies in [vec![], vec!["10.0.0.0/8".to_string()]] {
        let opts = ServerOptions {
            trusted_proxies: TrustedProxies::parse(&proxies).unwrap(),
            ..Default::default()
        };
        let server = serve_engine(engine.clone(), opts).await;
        for c in sign_in_cookies(&server.base, &tls).await {
            assert!(!attr(&c, "Secure"), "{proxies:?}: {c}");
            assert!(attr(&c, "HttpOnly") && attr(&c, "SameSite"), "{c}");
        }
        server.stop().await;
    }
    // An https public URL makes every cookie Secure, proxy or not.
    let opts = ServerOptions {
        public_url: Some("https://inloop.example".into()),
        ..Default::default()
    };
    let server = serve_engine(engine.clone(), opts).await;
    let origin = [("origin", "https://inloop.example")];
    for c in sign_in_cookies(&server.base, &origin).await {
        assert!(attr(&c, "Secure"), "{c}");
    }
    server.stop().await;
    engine.close().await;
}

/// Failed sign-ins from `client` (as `X-Forwarded-For`); the status of the last.
async fn failed_sign_ins(base: &str, client_ip: &str, n: usize) -> u16 {
    let http = client();
    let mut status = 0;
    for i in 0..n {
        let (csrf, _) = login_csrf(&http, base, &[]).await;
        let r = http
            .post(format!("{base}/login"))
            .header("cookie", format!("inloop_csrf={csrf}"))
            .header("x-forwarded-for", client_ip)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("csrf", &csrf),
                ("username", &format!("nobody{i}")),
                ("password", "wrong"),
            ]))
            .send()
            .await
            .unwrap();
        status = r.status().as_u16();
    }
    status
}

async fn forwarded_client_addresses_count_only_from_trusted_proxies(db: Db) {
    let engine = db.open().await;
    add_admin(&engine).await;
    let throttle = Some((Duration::from_secs(600), 100, 3));
    // Trusted: each client behind the proxy has its own budget.
    let opts = ServerOptions {
        trusted_proxies: TrustedProxies::parse(&["127.0.0.1".into()]).unwrap(),
        throttle,
        ..Default::default()
    };
    let server = serve_engine(engine.clone(), opts).await;
    assert_eq!(failed_sign_ins(&server.base, "203.0.113.1", 3).await, 401);
    assert_eq!(failed_sign_ins(&server.base, "203.0.113.1", 1).await, 429);
    assert_eq!(failed_sign_ins(&server.base, "203.0.113.2", 1).await, 401);
    server.stop().await;
    // Untrusted: the header is ignored, every attempt is the peer's (a client cannot buy a
    // fresh budget by inventing addresses).
    let opts = ServerOptions {
        throttle,
        ..Default::default()
    };
    let server = serve_engine(engine.clone(), opts).await;
    assert_eq!(failed_sign_ins(&server.base, "203.0.113.1", 3).await, 401);
    assert_eq!(failed_sign_ins(&server.base, "203.0.113.2", 1).await, 429);
    server.stop().await;
    engine.close().await;
}

/// Sends `requests` on one connection, one after another, and returns each response's head
/// (status line and headers, lower-cased); stops early when the server closes.
async fn heads_on_one_connection(base: &str, requests: &[String]) -> Vec<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut heads = Vec::new();
    for req in requests {
        if conn.write_all(req.as_bytes()).await.is_err() {
            break;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the head, then the body by content-length.
        let (head, body_len) = loop {
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
                .await
                .unwrap()
                .unwrap_or(0);
            if n == 0 {
                return heads;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                buf.drain(..end + 4);
                break (head, len);
            }
        };
        while buf.len() < body_len {
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the body ended early");
            buf.extend_from_slice(&chunk[..n]);
        }
        heads.push(head);
    }
    heads
}

/// A refused request with a body ends its connection, and says so (`Connection: close`):
/// the body may be unread, and a pooling client that reused the connection would race the
/// server's close (seen in CI as IncompleteMessage). Other responses keep it alive.
async fn refusals_with_unread_bodies_close_the_connection(db: Db) {
    let engine = db.open().await;
    let server = serve_engine(engine.clone(), ServerOptions::default()).await;
    let host = server.base.trim_start_matches("http://").to_string();
    let body = "{\"title\": \"x\", \"response_schema\": {}}";
    let post = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let get = format!("GET /healthz HTTP/1.1\r\nhost: {host}\r\n\r\n");
    // No API key: 401 before the body is read.
    let heads = heads_on_one_connection(&server.base, &[post.clone(), get.clone()]).await;
    assert_eq!(
        heads.len(),
        1,
        "the connection ends after the refusal: {heads:?}"
    );
    assert!(heads[0].starts_with("http/1.1 401"), "{}", heads[0]);
    assert!(heads[0].contains("connection: close"), "{}", heads[0]);
    // Without a body, a refusal keeps the connection (nothing is left unread).
    let missing = format!("GET /api/v1/tasks HTTP/1.1\r\nhost: {host}\r\n\r\n");
    let heads = heads_on_one_connection(&server.base, &[missing, get.clone(), get]).await;
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert!(heads[0].starts_with("http/1.1 401"), "{}", heads[0]);
    assert!(
        heads.iter().all(|h| !h.contains("connection: close")),
        "{heads:?}"
    );
    server.stop().await;
    engine.close().await;
}

conformance!(
    every_response_carries_the_security_headers,
    cookies_are_secure_behind_a_trusted_tls_proxy_only,
    forwarded_client_addresses_count_only_from_trusted_proxies,
    refusals_with_unread_bodies_close_the_connection,
);
