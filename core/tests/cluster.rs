//! Cluster-safe state (#13 item 4): two replicas (two `inloop serve` instances, each with its
//! own engine and connection pool, real HTTP on 127.0.0.1) on one database, on both backends
//! (SQLite: two pools on one file). The Slack replay cache, failed sign-ins and the first-run
//! setup token live in the database, so what one replica saw the other knows.
//!
//!   cargo test -p inloop-core --test cluster

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use common::{Db, Served, form_body, serve_engine, serve_listener};
use inloop_core::channels::slack::sign_request;
use inloop_core::channels::{Channels, Settings};
use inloop_core::model::now_ms;
use inloop_core::server::{ServerOptions, SetupStart, claim_setup, purge_expired_state};
use inloop_core::users::{self, Role};
use inloop_core::{Engine, NewTask};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "8f742231b10e8888abcd99e1e1e1e1e1";
const TOKEN: &str = "xoxb-1234-test-token";
const PASSWORD: &str = "correct horse battery";

/// A Slack Web API on loopback: enough for a click by a Slack user who is no inloop user
/// (`users.info` gives an unknown e-mail; `chat.postEphemeral` tells them).
async fn fake_slack() -> String {
    async fn api(Path(method): Path<String>, Json(body): Json<Value>) -> Json<Value> {
        Json(match method.as_str() {
            "users.info" => json!({"ok": true,
                "user": {"id": body["user"], "profile": {"email": "eve@elsewhere.test"}}}),
            "chat.postEphemeral" => json!({"ok": true, "message_ts": "1700000002.000300"}),
            _ => json!({"ok": false, "error": "unknown_method"}),
        })
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", l.local_addr().unwrap());
    let app = axum::Router::new().route("/api/{method}", axum::routing::post(api));
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// A replica with the Slack channel configured.
async fn slack_replica(engine: &Engine, api_url: &str) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let env: BTreeMap<String, String> = [
        ("INLOOP_SLACK_BOT_TOKEN", TOKEN),
        ("INLOOP_SLACK_SIGNING_SECRET", SECRET),
        ("INLOOP_SLACK_API_URL", api_url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let channels =
        Arc::new(Channels::new(Settings::resolve(None, &env, Some(&base)).unwrap()).unwrap());
    let opts = ServerOptions {
        public_url: Some(base),
        channels: Some(channels),
        ..Default::default()
    };
    serve_listener(engine.clone(), listener, opts)
}

/// A `block_actions` click as Slack sends it (form-encoded `payload`).
fn click_body(task: &str, user: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T1"},
        "api_app_id": "A1", "team": {"id": "T1", "domain": "acme"},
        "channel": {"id": "C0OPS", "name": "ops"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0OPS"},
        "trigger_id": "123.456.abc",
        "actions": [{"type": "button", "block_id": format!("inloop:{task}"),
                     "action_id": "inloop.approve", "value": task,
                     "action_ts": "1700000001.000200"}],
        "state": {"values": {}}
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

async fn post_slack(base: &str, body: &str, ts: i64, sig: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/slack/interactivity"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
}

async fn refusals(engine: &Engine, id: uuid::Uuid) -> usize {
    engine
        .audit(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "answer_refused")
        .count()
}

/// Waits until `engine` has audited `n` refusals on `id`, then a little more, and returns how
/// many there are (a request wrongly acted on would show as one more).
async fn settle_refusals(engine: &Engine, id: uuid::Uuid, n: usize) -> usize {
    for _ in 0..1000 {
        if refusals(engine, id).await >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    refusals(engine, id).await
}

/// A Slack request handled by replica A and replayed (same body, timestamp and signature) to
/// replica B is acknowledged and ignored by B; a fresh delivery of the same click is acted on
/// by B (the control). Each acted-on click by an unmapped Slack user leaves one audited
/// refusal, so a replay acted on would show as one more. Expired entries are purged.
async fn slack_replay_to_the_other_replica_is_refused(db: Db) {
    let engine_a = db.open().await;
    let engine_b = db.open().await;
    let api = fake_slack().await;
    let a = slack_replica(&engine_a, &api).await;
    let b = slack_replica(&engine_b, &api).await;
    let task = engine_a
        .create(NewTask {
            title: "Refund?".into(),
            response_schema: json!({"type": "object",
                "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]}),
            key: Some("slack-replay".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .task;
    let body = click_body(&task.id.to_string(), "UEVE");
    let ts = chrono::Utc::now().timestamp();
    let sig = sign_request(SECRET, ts, body.as_bytes());

    assert_eq!(post_slack(&a.base, &body, ts, &sig).await, StatusCode::OK);
    assert_eq!(settle_refusals(&engine_a, task.id, 1).await, 1);
    // The replay to the other replica: acknowledged (Slack must not retry), not acted on.
    assert_eq!(post_slack(&b.base, &body, ts, &sig).await, StatusCode::OK);
    // And back to the first one.
    assert_eq!(post_slack(&a.base, &body, ts, &sig).await, StatusCode::OK);
    // The control: the same click with a fresh timestamp (a new signature) is acted on by B.
    let ts2 = ts + 1;
    let sig2 = sign_request(SECRET, ts2, body.as_bytes());
    assert_eq!(post_slack(&b.base, &body, ts2, &sig2).await, StatusCode::OK);
    assert_eq!(
        settle_refusals(&engine_b, task.id, 2).await,
        2,
        "the replays were ignored by both replicas, the fresh delivery was acted on"
    );
    assert_eq!(post_slack(&a.base, &body, ts2, &sig2).await, StatusCode::OK);
    assert_eq!(settle_refusals(&engine_a, task.id, 2).await, 2);
    assert_eq!(
        db.raw_count("SELECT count(*) FROM inloop_slack_seen").await,
        2
    );

    // Rows expire ten minutes after they were seen: nothing younger is purged.
    assert_eq!(purge_expired_state(&engine_a, now_ms()).await.unwrap(), 0);
    assert_eq!(
        purge_expired_state(&engine_b, now_ms() + 601_000)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        db.raw_count("SELECT count(*) FROM inloop_slack_seen").await,
        0
    );
    a.stop().await;
    b.stop().await;
    engine_a.close().await;
    engine_b.close().await;
}

/// A browser-less dashboard client: the pre-session CSRF cookie, then the form.
async fn sign_in(base: &str, user: &str, password: &str) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(format!("{base}/login")).send().await.unwrap();
    let csrf = cookie(&page, "inloop_csrf").expect("a pre-session CSRF cookie");
    http.post(format!("{base}/login"))
        .header("cookie", format!("inloop_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("csrf", &csrf),
            ("username", user),
            ("password", password),
            ("next", "/tasks"),
        ]))
        .send()
        .await
        .unwrap()
}

fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let (k, rest) = c.split_once('=')?;
            (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
        })
}

/// Failed sign-ins split across two replicas count together: three wrong passwords for
/// alice (A, B, A) lock her out on both, even with the right password; another name is not
/// affected; five failures from one address (split again) lock that address out on both. The
/// stored keys are hashes (no typed name in the table), and rows go when their window ends.
async fn failed_sign_ins_count_across_replicas(db: Db) {
    let engine_a = db.open().await;
    let engine_b = db.open().await;
    for name in ["alice", "bob", "carol"] {
        users::add_user(&engine_a, name, None, Role::Reviewer, PASSWORD)
            .await
            .unwrap();
    }
    let opts = || ServerOptions {
        throttle: Some((Duration::from_secs(60), 3, 5)),
        ..Default::default()
    };
    let a = serve_engine(engine_a.clone(), opts()).await;
    let b = serve_engine(engine_b.clone(), opts()).await;
    let status = |r: reqwest::Response| r.status();

    for base in [&a.base, &b.base, &a.base] {
        let r = sign_in(base, "alice", "wrong password!").await;
        assert_eq!(status(r), StatusCode::UNAUTHORIZED);
    }
    for base in [&b.base, &a.base] {
        let r = sign_in(base, "Alice", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "on {base}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(cookie(&r, "inloop_session").is_none());
    }
    // bob is not affected (the address has 3 failures of its 5)
    assert_eq!(
        status(sign_in(&b.base, "bob", PASSWORD).await),
        StatusCode::SEE_OTHER
    );
    // two more failures from this address, one per replica: the address is locked out
    assert_eq!(
        status(sign_in(&a.base, "bob", "wrong password!").await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(sign_in(&b.base, "nobody", "wrong password!").await),
        StatusCode::UNAUTHORIZED
    );
    for base in [&a.base, &b.base] {
        assert_eq!(
            status(sign_in(base, "carol", PASSWORD).await),
            StatusCode::TOO_MANY_REQUESTS,
            "the address is locked out on {base}"
        );
    }
    // 5 failures, each under the name and the address
    assert_eq!(
        db.raw_count("SELECT count(*) FROM inloop_login_failures")
            .await,
        10
    );
    assert_eq!(
        db.raw_count(
            "SELECT count(*) FROM inloop_login_failures WHERE key_hash LIKE '%alice%' \
             OR key_hash LIKE '%127.0.0.1%'"
        )
        .await,
        0
    );
    assert_eq!(purge_expired_state(&engine_a, now_ms()).await.unwrap(), 0);
    assert_eq!(
        purge_expired_state(&engine_b, now_ms() + 61_000)
            .await
            .unwrap(),
        10
    );
    // the window has passed (its rows are gone): alice signs in on either replica
    assert_eq!(
        status(sign_in(&b.base, "alice", PASSWORD).await),
        StatusCode::SEE_OTHER
    );
    a.stop().await;
    b.stop().await;
    engine_a.close().await;
    engine_b.close().await;
}

/// The setup form posted to `base` with `token`.
async fn setup_post(base: &str, token: &str, name: &str) -> StatusCode {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{base}/setup?token={token}"))
        .send()
        .await
        .unwrap();
    let csrf = cookie(&page, "inloop_csrf").unwrap_or_else(|| "none".into());
    http.post(format!("{base}/setup"))
        .header("cookie", format!("inloop_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("token", token),
            ("csrf", &csrf),
            ("name", name),
            ("email", ""),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ]))
        .send()
        .await
        .unwrap()
        .status()
}

async fn setup_get(base: &str, token: &str) -> StatusCode {
    reqwest::get(format!("{base}/setup?token={token}"))
        .await
        .unwrap()
        .status()
}

const TOKEN_A: &str = "setup-token-of-replica-a-0123456789abcdefgh";
const TOKEN_B: &str = "setup-token-of-replica-b-0123456789abcdefgh";

fn with_token(token: &str, lease: Duration) -> ServerOptions {
    ServerOptions {
        setup_token: Some(token.into()),
        setup_lease: Some(lease),
        ..Default::default()
    }
}

/// The setup link printed by the first replica works on the other one, once: a replica
/// started later mints no second valid token (it says who holds the link); the link used on
/// B is refused on A afterwards (410, setup done), and exactly one admin exists. Then, on a
/// fresh database, two posts of one link race on the two replicas: exactly one wins.
async fn setup_link_works_once_on_any_replica(db: Db) {
    let engine_a = db.open().await;
    let engine_b = db.open().await;
    let a = serve_engine(
        engine_a.clone(),
        with_token(TOKEN_A, Duration::from_secs(60)),
    )
    .await;
    // B starts once A has claimed (A's first response comes after its claim).
    assert_eq!(setup_get(&a.base, TOKEN_A).await, StatusCode::OK);
    let b = serve_engine(
        engine_b.clone(),
        with_token(TOKEN_B, Duration::from_secs(60)),
    )
    .await;
    // B's own token is not valid (A's claim is running); A's link works on both.
    assert_eq!(setup_get(&b.base, TOKEN_B).await, StatusCode::FORBIDDEN);
    assert_eq!(setup_get(&a.base, TOKEN_B).await, StatusCode::FORBIDDEN);
    assert_eq!(setup_get(&b.base, TOKEN_A).await, StatusCode::OK);
    assert_eq!(setup_get(&a.base, TOKEN_A).await, StatusCode::OK);
    // What a third replica starting now would print: who holds the link.
    let third = claim_setup(&engine_b, "http://x", "third-token-0123456789", "third")
        .await
        .unwrap();
    match &third {
        SetupStart::HeldElsewhere { holder, .. } => {
            assert!(
                holder.contains(a.base.trim_start_matches("http://")),
                "{holder}"
            )
        }
        other => panic!("expected HeldElsewhere, got {other:?}"),
    }
    assert_eq!(
        setup_post(&b.base, TOKEN_B, "mallory").await,
        StatusCode::FORBIDDEN
    );
    // Used on B: the admin exists; the same link is done on A and on B.
    assert_eq!(
        setup_post(&b.base, TOKEN_A, "root").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        setup_post(&a.base, TOKEN_A, "root2").await,
        StatusCode::GONE
    );
    assert_eq!(setup_get(&a.base, TOKEN_A).await, StatusCode::GONE);
    assert_eq!(
        setup_post(&b.base, TOKEN_A, "root3").await,
        StatusCode::GONE
    );
    let all = users::list_users(&engine_a).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].name.as_str(), all[0].role), ("root", Role::Admin));
    assert_eq!(
        db.raw_count("SELECT count(*) FROM inloop_setup_token")
            .await,
        0
    );
    assert_eq!(
        claim_setup(&engine_a, "http://x", "late", "late")
            .await
            .unwrap(),
        SetupStart::Closed
    );
    a.stop().await;
    b.stop().await;
    engine_a.close().await;
    engine_b.close().await;
}

/// One link posted to both replicas at the same moment: one admin, one `303`, and the other
/// post refused with `410` (setup done; the token is consumed in the admin's transaction).
async fn setup_link_race_on_two_replicas(db: Db) {
    let engine_a = db.open().await;
    let engine_b = db.open().await;
    let a = serve_engine(
        engine_a.clone(),
        with_token(TOKEN_A, Duration::from_secs(60)),
    )
    .await;
    // B starts once A has claimed (A's first response comes after its claim).
    assert_eq!(setup_get(&a.base, TOKEN_A).await, StatusCode::OK);
    let b = serve_engine(
        engine_b.clone(),
        with_token(TOKEN_B, Duration::from_secs(60)),
    )
    .await;
    let (ra, rb) = tokio::join!(
        setup_post(&a.base, TOKEN_A, "first"),
        setup_post(&b.base, TOKEN_A, "second")
    );
    let mut got = [ra, rb];
    got.sort();
    assert_eq!(got[0], StatusCode::SEE_OTHER, "{got:?}");
    assert_eq!(got[1], StatusCode::GONE, "{got:?}");
    assert_eq!(users::list_users(&engine_a).await.unwrap().len(), 1);
    a.stop().await;
    b.stop().await;
    engine_a.close().await;
    engine_b.close().await;
}

/// The holder of the setup link goes away: stopped (it withdraws its token at once) or
/// killed (its claim lapses after the lease). Either way a running replica takes over with
/// its own token, and the old link stops working: never two valid links.
async fn setup_link_is_taken_over_when_its_holder_goes(db: Db) {
    let lease = Duration::from_millis(600);
    let engine_a = db.open().await;
    let engine_b = db.open().await;
    let a = serve_engine(engine_a.clone(), with_token(TOKEN_A, lease)).await;
    assert_eq!(setup_get(&a.base, TOKEN_A).await, StatusCode::OK);
    let b = serve_engine(engine_b.clone(), with_token(TOKEN_B, lease)).await;
    assert_eq!(setup_get(&b.base, TOKEN_A).await, StatusCode::OK);
    assert_eq!(setup_get(&b.base, TOKEN_B).await, StatusCode::FORBIDDEN);
    // A's renewals keep its claim past several leases
    tokio::time::sleep(lease * 2).await;
    assert_eq!(setup_get(&b.base, TOKEN_A).await, StatusCode::OK);
    assert_eq!(setup_get(&b.base, TOKEN_B).await, StatusCode::FORBIDDEN);
    // A stops: its token is withdrawn, B's keeper claims its own within a third of a lease.
    a.stop().await;
    assert_eq!(setup_get(&b.base, TOKEN_A).await, StatusCode::FORBIDDEN);
    let start = tokio::time::Instant::now();
    while setup_get(&b.base, TOKEN_B).await != StatusCode::OK {
        assert!(start.elapsed() < lease * 3, "B took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    engine_a.close().await;

    // A replica that died without withdrawing (SIGKILL): its claim lapses after its lease.
    let ghost = "token-of-a-killed-replica-0123456789abcdef";
    assert!(
        users::claim_setup_token(&engine_b, ghost, "killed", lease)
            .await
            .unwrap()
    );
    let c = serve_engine(engine_b.clone(), with_token(TOKEN_B, lease)).await;
    assert_eq!(setup_get(&c.base, ghost).await, StatusCode::OK);
    assert_eq!(setup_get(&c.base, TOKEN_B).await, StatusCode::FORBIDDEN);
    let start = tokio::time::Instant::now();
    while setup_get(&c.base, TOKEN_B).await != StatusCode::OK {
        assert!(start.elapsed() < lease * 4, "C took over the lapsed claim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(setup_get(&c.base, ghost).await, StatusCode::FORBIDDEN);
    assert_eq!(
        setup_post(&c.base, TOKEN_B, "root").await,
        StatusCode::SEE_OTHER
    );
    c.stop().await;
    engine_b.close().await;
}

/// `inloop serve`, the real binary, with its stdout and stderr lines on a channel; killed
/// (SIGKILL) when dropped.
struct Serve {
    child: std::process::Child,
    base: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Serve {
    fn start(db: &Db, lease_secs: u64) -> Serve {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_inloop"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("INLOOP_DATABASE_URL", &db.url)
            .env("INLOOP_SETUP_LEASE_SECS", lease_secs.to_string())
            .env("INLOOP_LOG_FORMAT", "json")
            .env_remove("INLOOP_PUBLIC_URL")
            .env_remove("INLOOP_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start inloop serve");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let forward = |r: Box<dyn std::io::Read + Send>, tx: std::sync::mpsc::Sender<String>| {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            })
        };
        forward(Box::new(out), tx.clone());
        forward(Box::new(err), tx);
        let mut serve = Serve {
            child,
            base: String::new(),
            lines,
        };
        let listening = serve.line("listening on", Duration::from_secs(30));
        let addr = listening
            .split("listening on http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {listening:?}"));
        serve.base = format!("http://{addr}");
        serve
    }

    /// The next line holding `needle`, within `within`.
    fn line(&self, needle: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} within {within:?} ({e})"),
            }
        }
    }

    /// The token of the next setup link this replica prints or logs.
    fn setup_token(&self, within: Duration) -> String {
        let l = self.line("/setup?token=", within);
        l.split("/setup?token=")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary: two `inloop serve` replicas, the one that printed the setup link is
/// killed with SIGKILL (no withdrawal), and the other logs a new link within 4/3 of the lease
/// (`INLOOP_SETUP_LEASE_SECS`); the dead replica's link is refused, the new one works once.
async fn setup_link_is_taken_over_after_its_serve_is_killed(db: Db) {
    // Migrated first: two replicas starting on a fresh database race to migrate (safe, but
    // the point here is the lease).
    db.open().await.close().await;
    let lease = Duration::from_secs(1);
    let a = Serve::start(&db, lease.as_secs());
    let token_a = a.setup_token(Duration::from_secs(10));
    let b = Serve::start(&db, lease.as_secs());
    b.line("printed by another replica", Duration::from_secs(10));
    assert_eq!(setup_get(&b.base, &token_a).await, StatusCode::OK);
    let mut a = a;
    a.child.kill().unwrap(); // SIGKILL: A never withdraws its token
    a.child.wait().unwrap();
    let killed = std::time::Instant::now();
    let token_b = tokio::task::block_in_place(|| b.setup_token(Duration::from_secs(15)));
    let took = killed.elapsed();
    eprintln!("setup link taken over {took:?} after the SIGKILL (lease {lease:?})");
    assert!(
        took < lease * 4 / 3 + Duration::from_secs(3),
        "took {took:?}"
    );
    assert_ne!(token_a, token_b);
    assert_eq!(setup_get(&b.base, &token_a).await, StatusCode::FORBIDDEN);
    assert_eq!(setup_get(&b.base, &token_b).await, StatusCode::OK);
    assert_eq!(
        setup_post(&b.base, &token_b, "root").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(setup_get(&b.base, &token_b).await, StatusCode::GONE);
    drop(b);
}

conformance!(
    slack_replay_to_the_other_replica_is_refused,
    failed_sign_ins_count_across_replicas,
    setup_link_works_once_on_any_replica,
    setup_link_race_on_two_replicas,
    setup_link_is_taken_over_when_its_holder_goes,
    setup_link_is_taken_over_after_its_serve_is_killed,
);
