//! The dashboard over real HTTP (a real server on 127.0.0.1:0, a real client) on both
//! backends: first-run setup, sign-in and its throttling, sessions and their expiry, CSRF,
//! who sees and answers what, answers through the generated form, escaping of everything
//! a task carries, and live updates over server-sent events. (Chromium drives the same pages
//! in `tests/browser/`.)

mod common;
#[path = "common/hook.rs"]
mod hook;

use std::time::Duration;

use common::{Db, Served, serve_engine};
use inloop_core::server::ServerOptions;
use inloop_core::users::{self, Role};
use inloop_core::{Engine, NewTask, Status};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SETUP_TOKEN: &str = "test-setup-token-0123456789abcdefghijklmnopq";
const PASSWORD: &str = "correct horse battery";

struct Dash {
    base: String,
    http: reqwest::Client,
    engine: Engine,
    server: Served,
}

async fn start(db: &Db, throttle: Option<(Duration, usize, usize)>) -> Dash {
    let engine = db.open().await;
    let opts = ServerOptions {
        setup_token: Some(SETUP_TOKEN.into()),
        throttle,
        ..Default::default()
    };
    let server = serve_engine(engine.clone(), opts).await;
    Dash {
        base: server.base.clone(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        engine,
        server,
    }
}

/// A response, read whole.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                let (k, rest) = c.split_once('=')?;
                (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
            })
    }

    fn set_cookie_line(&self, name: &str) -> String {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    }

    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the hidden input `name` (the first one).
    fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\"");
        let at = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.body));
        let tag_start = self.body[..at].rfind('<').unwrap();
        let tag_end = at + self.body[at..].find('>').unwrap();
        let tag = &self.body[tag_start..tag_end];
        let v = tag.split("value=\"").nth(1).unwrap();
        v[..v.find('"').unwrap()].to_string()
    }
}

impl Dash {
    async fn send(
        &self,
        method: Method,
        path: &str,
        cookies: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if !cookies.is_empty() {
            let c: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            r = r.header("cookie", c.join("; "));
        }
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        if let Some(f) = form {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(f.iter())
                .finish();
            r = r
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = r.send().await.unwrap();
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Page {
        match session {
            Some(s) => {
                self.send(Method::GET, path, &[("inloop_session", s)], None, &[])
                    .await
            }
            None => self.send(Method::GET, path, &[], None, &[]).await,
        }
    }

    async fn post(&self, path: &str, session: &str, form: &[(&str, &str)]) -> Page {
        self.send(
            Method::POST,
            path,
            &[("inloop_session", session)],
            Some(form),
            &[],
        )
        .await
    }

    /// Signs in through the form; returns the session cookie and the CSRF token of the
    /// pages.
    async fn sign_in(&self, user: &str, password: &str) -> (String, String) {
        let p = self.sign_in_attempt(user, password).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        let session = p.cookie("inloop_session").expect("a session cookie");
        let page = self.get("/tasks", Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.hidden("csrf");
        (session, csrf)
    }

    async fn sign_in_attempt(&self, user: &str, password: &str) -> Page {
        let login = self.get("/login", None).await;
        assert_eq!(login.status, StatusCode::OK);
        let csrf = login
            .cookie("inloop_csrf")
            .expect("a pre-session csrf cookie");
        assert_eq!(login.hidden("csrf"), csrf);
        self.send(
            Method::POST,
            "/login",
            &[("inloop_csrf", &csrf)],
            Some(&[
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
                ("next", "/tasks"),
            ]),
            &[],
        )
        .await
    }

    async fn shutdown(self) {
        self.server.stop().await;
        self.engine.close().await;
    }
}

fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "approved": {"type": "boolean", "title": "Approve?"},
            "amount": {"type": "integer", "minimum": 1, "maximum": 100},
            "note": {"type": "string"}
        },
        "required": ["approved", "amount"]
    })
}

async fn task(engine: &Engine, key: &str, title: &str, assign_to: &[&str]) -> uuid::Uuid {
    engine
        .create(NewTask {
            key: Some(key.into()),
            title: title.into(),
            payload: json!({"order": "A-1", "amount": 50}),
            response_schema: schema(),
            assign_to: assign_to.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .id
}

/// First run: the setup link (and only it) creates the first admin, once; the form needs its
/// CSRF cookie; afterwards setup is closed and the admin is signed in.
async fn setup_link_creates_the_admin_once(db: Db) {
    let d = start(&db, None).await;
    // before setup, the dashboard says how to start
    let home = d.get("/", None).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("setup link"), "{}", home.body);
    assert_eq!(
        d.get("/setup?token=wrong", None).await.status,
        StatusCode::FORBIDDEN
    );
    let page = d.get(&format!("/setup?token={SETUP_TOKEN}"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.cookie("inloop_csrf").unwrap();
    let fields = |csrf: &str| {
        vec![
            ("token".to_string(), SETUP_TOKEN.to_string()),
            ("csrf".to_string(), csrf.to_string()),
            ("name".to_string(), "root".to_string()),
            ("email".to_string(), "root@acme.com".to_string()),
            ("password".to_string(), PASSWORD.to_string()),
            ("password2".to_string(), PASSWORD.to_string()),
        ]
    };
    let as_refs = |v: &Vec<(String, String)>| -> Vec<(String, String)> { v.clone() };
    let post = |cookie: &str, f: Vec<(String, String)>| {
        let cookie = cookie.to_string();
        let d = &d;
        async move {
            let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            d.send(
                Method::POST,
                "/setup",
                &[("inloop_csrf", &cookie)],
                Some(&refs),
                &[],
            )
            .await
        }
    };
    // without the matching CSRF cookie: refused
    let p = post("other", as_refs(&fields(&csrf))).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // mismatched passwords: the form comes back
    let mut bad = fields(&csrf);
    bad[5].1 = "something else entirely".into();
    assert_eq!(
        post(&csrf, bad).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // a too-short password: the core's message
    let mut short = fields(&csrf);
    short[4].1 = "short".into();
    short[5].1 = "short".into();
    let p = post(&csrf, short).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("at least 10 characters"), "{}", p.body);

    let p = post(&csrf, fields(&csrf)).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/tasks");
    let session = p.cookie("inloop_session").unwrap();
    let line = p.set_cookie_line("inloop_session");
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    assert_eq!(d.get("/tasks", Some(&session)).await.status, StatusCode::OK);
    let admin = users::user(&d.engine, "root").await.unwrap();
    assert_eq!(admin.role, Role::Admin);

    // used up: the same link and form no longer work
    assert_eq!(
        d.get(&format!("/setup?token={SETUP_TOKEN}"), None)
            .await
            .status,
        StatusCode::GONE
    );
    assert_eq!(post(&csrf, fields(&csrf)).await.status, StatusCode::GONE);
    assert_eq!(users::list_users(&d.engine).await.unwrap().len(), 1);
    d.shutdown().await;
}

/// Sign-in: wrong passwords refused with one message; after the limit, even the right
/// password is refused (429, Retry-After) for that name; sign-out ends the session.
async fn sign_in_is_throttled_and_sign_out_ends_the_session(db: Db) {
    let d = start(&db, Some((Duration::from_secs(60), 3, 100))).await;
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    users::add_user(&d.engine, "bob", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    // an unauthenticated page sends to the sign-in page, keeping where to return
    let p = d.get("/tasks?status=all", None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        p.location().starts_with("/login?next=%2Ftasks"),
        "{}",
        p.location()
    );

    for _ in 0..3 {
        let p = d.sign_in_attempt("alice", "wrong password!").await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains("wrong user name or password"));
    }
    let p = d.sign_in_attempt("alice", PASSWORD).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
    assert!(p.headers.get("retry-after").is_some());
    assert!(p.cookie("inloop_session").is_none());
    // another name is not affected
    let (session, csrf) = d.sign_in("bob", PASSWORD).await;

    // sign-out needs the CSRF token, then ends the session
    assert_eq!(
        d.post("/logout", &session, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let p = d.post("/logout", &session, &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        d.get("/tasks", Some(&session)).await.status,
        StatusCode::SEE_OTHER
    );
    d.shutdown().await;
}

/// Every state-changing post needs the session's CSRF token and a same-site origin; an
/// expired session is refused; a disabled user is signed out.
async fn posts_need_csrf_and_a_live_session(db: Db) {
    let d = start(&db, None).await;
    users::add_user(&d.engine, "root", None, Role::Admin, PASSWORD)
        .await
        .unwrap();
    let id = task(&d.engine, "k1", "Approve?", &[]).await;
    let (session, csrf) = d.sign_in("root", PASSWORD).await;
    let path = format!("/tasks/{id}/answer");
    let answer = [("/approved", "true"), ("/amount", "5")];

    // no token, a wrong token, a cross-site origin: refused, nothing answered
    assert_eq!(
        d.post(&path, &session, &answer).await.status,
        StatusCode::FORBIDDEN
    );
    let mut wrong = answer.to_vec();
    wrong.push(("csrf", "not-the-token"));
    assert_eq!(
        d.post(&path, &session, &wrong).await.status,
        StatusCode::FORBIDDEN
    );
    let mut ok = answer.to_vec();
    ok.push(("csrf", &csrf));
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(ok.iter())
        .finish();
    let cross = d
        .http
        .post(format!("{}{path}", d.base))
        .header("cookie", format!("inloop_session={session}"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // an oversize form is refused before it is read
    let huge = format!("csrf={csrf}&/note={}", "x".repeat(2 * 1024 * 1024));
    let big = d
        .http
        .post(format!("{}{path}", d.base))
        .header("cookie", format!("inloop_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // a JSON body is not a form
    let p = d
        .send(
            Method::POST,
            &path,
            &[("inloop_session", &session)],
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(d.engine.get(id).await.unwrap().status, Status::Pending);

    // an expired session: posts get 401, pages send to sign-in
    db.raw_execute("UPDATE inloop_sessions SET expires_at = 1")
        .await
        .unwrap();
    assert_eq!(
        d.post(&path, &session, &ok).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        d.get("/tasks", Some(&session)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(d.engine.get(id).await.unwrap().status, Status::Pending);

    // a fresh session works; disabling the user ends it
    let (session, csrf) = d.sign_in("root", PASSWORD).await;
    let mut ok = answer.to_vec();
    ok.push(("csrf", &csrf));
    let p = d.post(&path, &session, &ok).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let done = d.engine.get(id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.answered_by.as_deref(), Some("root"));
    assert_eq!(done.answered_via.as_deref(), Some("dashboard"));
    assert_eq!(done.response, Some(json!({"approved": true, "amount": 5})));
    users::set_disabled(&d.engine, "root", true).await.unwrap();
    assert_eq!(
        d.get("/tasks", Some(&session)).await.status,
        StatusCode::SEE_OTHER
    );
    d.shutdown().await;
}

/// A reviewer sees only what is theirs: another's task is absent from the queue, 404 on its
/// page and on every action, and stays untouched.
async fn reviewers_see_only_their_tasks(db: Db) {
    let d = start(&db, None).await;
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    let mine = task(&d.engine, "mine", "Alice's refund", &["alice"]).await;
    let theirs = task(&d.engine, "theirs", "Bob's secret refund", &["bob"]).await;
    let (session, csrf) = d.sign_in("alice", PASSWORD).await;
    let queue = d.get("/tasks", Some(&session)).await;
    assert!(queue.body.contains("Alice&#39;s refund") || queue.body.contains("Alice's refund"));
    assert!(!queue.body.contains("secret"), "{}", queue.body);
    assert!(!queue.body.contains(&theirs.to_string()));
    assert_eq!(
        d.get(&format!("/tasks/{theirs}"), Some(&session))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    for action in ["answer", "claim", "release", "cancel"] {
        let p = d
            .post(
                &format!("/tasks/{theirs}/{action}"),
                &session,
                &[("csrf", &csrf), ("/approved", "true"), ("/amount", "5")],
            )
            .await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{action}");
    }
    let t = d.engine.get(theirs).await.unwrap();
    assert_eq!((t.status, t.claimed_by), (Status::Pending, None));
    assert_eq!(d.engine.audit(theirs).await.unwrap().len(), 1);
    // her own: claim, then cancel is for admins only
    let p = d
        .post(
            &format!("/tasks/{mine}/claim"),
            &session,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        d.engine.get(mine).await.unwrap().claimed_by.as_deref(),
        Some("alice")
    );
    let p = d
        .post(
            &format!("/tasks/{mine}/cancel"),
            &session,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(d.engine.get(mine).await.unwrap().status, Status::Pending);
    d.shutdown().await;
}

/// A 2-of-3 task in the dashboard: the first approver's vote is recorded (the task stays
/// pending, the page says so and lists the vote, who is still asked and the schedule); an
/// admin outside the list may not vote; the second approval completes it; a late vote is
/// told who answered and when.
async fn quorum_votes_in_the_dashboard(db: Db) {
    let d = start(&db, None).await;
    for (name, role) in [
        ("alice", Role::Reviewer),
        ("bob", Role::Reviewer),
        ("carol", Role::Reviewer),
        ("root", Role::Admin),
    ] {
        users::add_user(
            &d.engine,
            name,
            Some(&format!("{name}@acme.test")),
            role,
            PASSWORD,
        )
        .await
        .unwrap();
    }
    let policy: inloop_core::policy::Policy = serde_json::from_value(json!({
        "approvers": {"any_of": ["alice@acme.test", "bob", "carol"], "required": 2},
        "reminders_ms": [3_600_000],
        "escalate": [{"after_ms": 7_200_000, "notify": ["email:cfo@acme.test"]}],
        "on_timeout": "raise"
    }))
    .unwrap();
    let id = d
        .engine
        .create(NewTask {
            key: Some("wire-1".into()),
            title: "Wire 25,000 EUR to ACME?".into(),
            payload: json!({"amount": 25000}),
            response_schema: json!({"type": "object", "required": ["approved"],
                "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string"}}}),
            timeout_ms: Some(8 * 3_600_000),
            policy: Some(policy),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .id;
    let path = format!("/tasks/{id}");
    let (alice, csrf_a) = d.sign_in("alice", PASSWORD).await;
    let queue = d.get("/tasks", Some(&alice)).await;
    assert!(queue.body.contains("0/2"), "the queue shows the tally");
    let page = d.get(&path, Some(&alice)).await;
    assert!(page.body.contains("0 of 2"), "{}", page.body);
    assert!(
        page.body.contains("Reminder 1"),
        "the schedule lists the timers"
    );
    assert!(page.body.contains("Escalation 1"));
    assert!(page.body.contains("then the task times out"));
    let p = d
        .post(
            &format!("{path}/answer"),
            &alice,
            &[("csrf", &csrf_a), ("/approved", "true")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location().ends_with("?done=voted"), "{}", p.location());
    let page = d.get(&format!("{path}?done=voted"), Some(&alice)).await;
    assert!(page.body.contains("Your vote is recorded"), "{}", page.body);
    assert!(page.body.contains("1 of 2"));
    assert!(page.body.contains("You voted to"));
    assert!(page.body.contains("Still asked"));
    assert!(
        !page.body.contains("answer-approve"),
        "no second vote offered"
    );
    assert_eq!(d.engine.get(id).await.unwrap().status, Status::Pending);

    // An admin outside the list sees the task but may not vote.
    let (root, csrf_r) = d.sign_in("root", PASSWORD).await;
    let page = d.get(&path, Some(&root)).await;
    assert!(
        page.body.contains("not one of its approvers"),
        "{}",
        page.body
    );
    let p = d
        .post(
            &format!("{path}/answer"),
            &root,
            &[("csrf", &csrf_r), ("/approved", "true")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("not one of the approvers"), "{}", p.body);

    let (bob, csrf_b) = d.sign_in("bob", PASSWORD).await;
    let p = d
        .post(
            &format!("{path}/answer"),
            &bob,
            &[("csrf", &csrf_b), ("/approved", "true")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(p.location().ends_with("?done=answered"));
    let t = d.engine.get(id).await.unwrap();
    assert_eq!(t.status, Status::Completed);
    assert_eq!(t.votes.len(), 2);

    // Late: carol is told who answered and when, and the refusal is audited.
    let (carol, csrf_c) = d.sign_in("carol", PASSWORD).await;
    let p = d
        .post(
            &format!("{path}/answer"),
            &carol,
            &[("csrf", &csrf_c), ("/approved", "false")],
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(p.body.contains("answered by bob at"), "{}", p.body);
    let last = d.engine.audit(id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_deref()),
        ("answer_refused", Some("carol"))
    );
    d.shutdown().await;
}

/// The generated form: a value that does not convert and one the schema refuses both come
/// back with field errors and the task stays pending; a valid one completes it.
async fn form_errors_keep_the_task_pending(db: Db) {
    let d = start(&db, None).await;
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    let id = task(&d.engine, "f", "Refund?", &[]).await;
    let (session, csrf) = d.sign_in("alice", PASSWORD).await;
    let page = d.get(&format!("/tasks/{id}"), Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"/amount\""), "{}", page.body);
    let path = format!("/tasks/{id}/answer");

    let p = d
        .post(
            &path,
            &session,
            &[("csrf", &csrf), ("/approved", "true"), ("/amount", "12x")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("12x"), "the typed text is kept: {}", p.body);
    let p = d
        .post(
            &path,
            &session,
            &[("csrf", &csrf), ("/approved", "true"), ("/amount", "500")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("500"), "{}", p.body);
    assert_eq!(d.engine.get(id).await.unwrap().status, Status::Pending);
    let kinds: Vec<String> = d
        .engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "answer_refused"]);

    let p = d
        .post(
            &path,
            &session,
            &[
                ("csrf", &csrf),
                ("/approved", "false"),
                ("/amount", "7"),
                ("/note", "too high"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let done = d.engine.get(id).await.unwrap();
    assert_eq!(
        done.response,
        Some(json!({"approved": false, "amount": 7, "note": "too high"}))
    );
    // a second answer: the page says who answered
    let p = d
        .post(
            &path,
            &session,
            &[("csrf", &csrf), ("/approved", "true"), ("/amount", "7")],
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.body.contains("already answered by alice"), "{}", p.body);
    d.shutdown().await;
}

/// A rule of the task's verification rejects the answer: the reviewer sees the reason, the
/// form keeps what they typed, the task stays pending; the last allowed rejection ends it.
async fn verification_rejections_reach_the_reviewer(db: Db) {
    let d = start(&db, None).await;
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    let verification: inloop_core::verify::Verification = serde_json::from_value(json!({
        "rules": [{
            "name": "within_order",
            "check": {"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]},
            "message": "the refund may not exceed the order's amount"
        }],
        "max_attempts": 2
    }))
    .unwrap();
    let id = d
        .engine
        .create(NewTask {
            key: Some("verified".into()),
            title: "Refund?".into(),
            payload: json!({"order": "A-1", "amount": 50}),
            response_schema: schema(),
            verification: Some(verification),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .id;
    let (session, csrf) = d.sign_in("alice", PASSWORD).await;
    let path = format!("/tasks/{id}/answer");
    let p = d
        .post(
            &path,
            &session,
            &[
                ("csrf", &csrf),
                ("/approved", "true"),
                ("/amount", "90"),
                ("/note", "kept"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(
        p.body
            .contains("the refund may not exceed the order&#39;s amount")
            || p.body
                .contains("the refund may not exceed the order's amount"),
        "{}",
        p.body
    );
    assert!(p.body.contains("1 attempt left"), "{}", p.body);
    assert!(
        p.body.contains("value=\"90\""),
        "the typed amount is kept: {}",
        p.body
    );
    assert!(p.body.contains("kept"), "{}", p.body);
    assert_eq!(d.engine.get(id).await.unwrap().status, Status::Pending);
    // the second rejection is the last allowed: the task ends, the page says so
    let p = d
        .post(
            &path,
            &session,
            &[("csrf", &csrf), ("/approved", "true"), ("/amount", "80")],
        )
        .await;
    assert_eq!(p.status, StatusCode::GONE, "{}", p.body);
    assert_eq!(
        d.engine.get(id).await.unwrap().status,
        Status::VerificationExhausted
    );
    d.shutdown().await;
}

/// Script and markup in a task's title, payload (keys and values), schema texts and enum
/// labels are shown as text on every page that shows them; pages carry a strict CSP.
async fn everything_a_task_carries_is_escaped(db: Db) {
    let d = start(&db, None).await;
    users::add_user(&d.engine, "root", None, Role::Admin, PASSWORD)
        .await
        .unwrap();
    let evil = "<script>alert(1)</script>";
    let attr = "\"><img src=x onerror=alert(2)>";
    let id = d
        .engine
        .create(NewTask {
            key: Some(format!("{evil}{attr}")),
            title: format!("Refund {evil} {attr}"),
            payload: json!({ evil: attr, "nested": {"html": format!("<b>{evil}</b>")}, "list": [evil] }),
            response_schema: json!({
                "type": "object",
                "title": evil,
                "description": attr,
                "properties": {
                    "choice": {"enum": [evil, attr], "title": evil, "description": attr},
                    "text": {"type": "string", "default": attr}
                },
                "required": ["choice"]
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .id;
    let (session, csrf) = d.sign_in("root", PASSWORD).await;
    // a refused answer (not one of the choices) puts the bad value into the audit trail and
    // back into the form
    let not_a_choice = format!("{evil}!");
    let p = d
        .post(
            &format!("/tasks/{id}/answer"),
            &session,
            &[("csrf", &csrf), ("/choice", &not_a_choice), ("/text", attr)],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    for page in [
        d.get("/tasks", Some(&session)).await,
        d.get("/tasks?status=all", Some(&session)).await,
        d.get(&format!("/tasks/{id}"), Some(&session)).await,
        p,
    ] {
        assert!(!page.body.contains("<script>alert"), "{}", page.body);
        assert!(!page.body.contains("<img src=x"), "{}", page.body);
        assert!(!page.body.contains("<b><script"), "{}", page.body);
        let csp = page
            .headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(page.headers.get("x-frame-options").unwrap(), "DENY");
    }
    let page = d.get(&format!("/tasks/{id}"), Some(&session)).await;
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    d.shutdown().await;
}

/// Live updates: the event stream announces a task created elsewhere (another engine on the
/// same database, as another process would), and only tasks the viewer may see.
async fn event_stream_announces_changes(db: Db) {
    let d = start(&db, None).await;
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    let (session, _) = d.sign_in("alice", PASSWORD).await;
    let unauth = d.get("/events", None).await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
    let resp = d
        .http
        .get(format!("{}/events", d.base))
        .header("cookie", format!("inloop_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut resp = resp;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elsewhere = db.open().await;
    let hidden = task(&elsewhere, "hidden", "Not hers", &["bob"]).await;
    let visible = task(&elsewhere, "visible", "Hers", &["alice"]).await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(&visible.to_string()) {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: change"), "{text}");
    assert!(!text.contains(&hidden.to_string()), "{text}");
    elsewhere.close().await;
    d.shutdown().await;
}

/// Failed deliveries stand out: a task whose webhook always fails past a short horizon gets a
/// badge on its queue row, the header shows how many deliveries failed and links to a filter
/// that lists only such tasks, and the task page lists the failed delivery with its error.
/// A reviewer sees this only for the tasks they may see: never for another's task.
async fn failed_deliveries_show_to_those_who_may_see_the_task(db: Db) {
    use inloop_core::channels::{self, Channels, Settings};
    let hook = hook::Hook::start(hook::Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let mut env = hook.env("billing");
    env.insert("INLOOP_CHANNEL_RETRY_HORIZON_SECS".into(), "1".into());
    env.insert("INLOOP_CHANNEL_RETRY_BASE_MS".into(), "20".into());
    let ch = Channels::new(Settings::resolve(None, &env, None).unwrap()).unwrap();
    let d = start(&db, None).await;
    users::add_user(&d.engine, "root", None, Role::Admin, PASSWORD)
        .await
        .unwrap();
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    let notified = |key: &str, title: &str, who: &str| NewTask {
        key: Some(key.into()),
        title: title.into(),
        payload: json!({"order": key}),
        response_schema: schema(),
        assign_to: vec![who.into()],
        notify: vec!["webhook:billing".into()],
        ..Default::default()
    };
    let bobs = d
        .engine
        .create(notified("bobs", "Bob's hidden refund", "bob"))
        .await
        .unwrap()
        .task
        .id;
    let hers = d
        .engine
        .create(notified("hers", "Alice's failing refund", "alice"))
        .await
        .unwrap()
        .task
        .id;
    let quiet = task(&d.engine, "quiet", "Alice's quiet refund", &["alice"]).await;
    let start_at = std::time::Instant::now();
    loop {
        let failed = channels::deliveries_in(&d.engine, Some("failed"), 10)
            .await
            .unwrap();
        if failed.len() == 2 {
            break;
        }
        assert!(start_at.elapsed() < Duration::from_secs(20), "{failed:?}");
        if channels::dispatch_once(&d.engine, &ch, "w").await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let badge = |id: uuid::Uuid| {
        format!(r#"<a class="badge dlv-failed" href="/tasks/{id}#task-deliveries""#)
    };
    let chip = r#"<a class="chip dlv-failed" href="/tasks?status=all&amp;deliveries=failed""#;

    // The admin sees both.
    let (root, _) = d.sign_in("root", PASSWORD).await;
    let q = d.get("/tasks", Some(&root)).await;
    assert_eq!(q.status, StatusCode::OK);
    assert!(
        q.body.contains(chip) && q.body.contains("2 failed deliveries</a>"),
        "{}",
        q.body
    );
    assert!(
        q.body.contains(&badge(bobs)) && q.body.contains(&badge(hers)),
        "{}",
        q.body
    );
    assert!(!q.body.contains(&badge(quiet)), "{}", q.body);
    assert!(q.body.contains(&quiet.to_string()));
    let f = d
        .get("/tasks?status=all&deliveries=failed", Some(&root))
        .await;
    assert!(f.body.contains(&format!("/tasks/{bobs}\">")), "{}", f.body);
    assert!(f.body.contains(&format!("/tasks/{hers}\">")), "{}", f.body);
    assert!(!f.body.contains(&quiet.to_string()), "{}", f.body);
    assert!(
        f.body.contains("Only tasks with a failed delivery"),
        "{}",
        f.body
    );
    let p = d.get(&format!("/tasks/{bobs}"), Some(&root)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body
            .contains(r#"<section id="task-deliveries" data-live"#),
        "{}",
        p.body
    );
    assert!(
        p.body.contains(r#"<tr class="dlv-row dlv-failed">"#),
        "{}",
        p.body
    );
    assert!(p.body.contains("gave up after"), "{}", p.body);
    assert!(p.body.contains("<code>billing</code>"), "{}", p.body);
    let p = d.get(&format!("/tasks/{quiet}"), Some(&root)).await;
    assert!(
        p.body.contains(
            r#"<section id="task-deliveries" data-live aria-label="Deliveries"></section>"#
        ),
        "{}",
        p.body
    );

    // The reviewer sees only her own task's failure; Bob's stays invisible everywhere.
    let (alice, _) = d.sign_in("alice", PASSWORD).await;
    let q = d.get("/tasks", Some(&alice)).await;
    assert!(
        q.body.contains(chip) && q.body.contains("1 failed delivery</a>"),
        "{}",
        q.body
    );
    assert!(q.body.contains(&badge(hers)), "{}", q.body);
    assert!(
        !q.body.contains(&bobs.to_string()) && !q.body.contains("hidden refund"),
        "{}",
        q.body
    );
    let f = d
        .get("/tasks?status=all&deliveries=failed", Some(&alice))
        .await;
    assert!(f.body.contains(&badge(hers)), "{}", f.body);
    assert!(!f.body.contains(&bobs.to_string()), "{}", f.body);
    assert!(!f.body.contains(&quiet.to_string()), "{}", f.body);
    let p = d.get(&format!("/tasks/{bobs}"), Some(&alice)).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(
        !p.body.contains("gave up") && !p.body.contains("billing"),
        "{}",
        p.body
    );
    let p = d.get(&format!("/tasks/{hers}"), Some(&alice)).await;
    assert!(
        p.body.contains(r#"<tr class="dlv-row dlv-failed">"#),
        "{}",
        p.body
    );
    d.shutdown().await;
}

/// Effects in doubt: admins see them (linked from the nav) and resolve them with CSRF-checked
/// forms naming the attempt they saw; reviewers get no link and a 404; every resolution is
/// the core's compare-and-set, audited with the admin's name.
async fn effects_in_doubt_are_for_admins(db: Db) {
    use inloop_core::access::Principal;
    use inloop_core::effects::{Begin, EffectState};
    let d = start(&db, None).await;
    users::add_user(&d.engine, "root", None, Role::Admin, PASSWORD)
        .await
        .unwrap();
    users::add_user(&d.engine, "alice", None, Role::Reviewer, PASSWORD)
        .await
        .unwrap();
    let t = Principal::Trusted;
    let evil = "<script>alert(1)</script>";
    let key = format!("charge {evil}");
    for k in [key.as_str(), "mail-7"] {
        d.engine
            .effect_begin("billing", k, None, Some("python:host:42"), &t)
            .await
            .unwrap();
    }

    // a reviewer: no link, 404 on the page and on the action, nothing changes
    let (rs, rcsrf) = d.sign_in("alice", PASSWORD).await;
    let queue = d.get("/tasks", Some(&rs)).await;
    assert!(!queue.body.contains("href=\"/effects\""), "{}", queue.body);
    assert_eq!(
        d.get("/effects", Some(&rs)).await.status,
        StatusCode::NOT_FOUND
    );
    let p = d
        .post(
            "/effects/resolve",
            &rs,
            &[
                ("csrf", &rcsrf),
                ("namespace", "billing"),
                ("key", "mail-7"),
                ("attempt", "1"),
                ("action", "allow_retry"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // not signed in: to the sign-in page
    assert_eq!(d.get("/effects", None).await.status, StatusCode::SEE_OTHER);

    // an admin: the link, the list (escaped), the forms
    let (s, csrf) = d.sign_in("root", PASSWORD).await;
    let queue = d.get("/tasks", Some(&s)).await;
    assert!(queue.body.contains("href=\"/effects\""), "{}", queue.body);
    let page = d.get("/effects", Some(&s)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("mail-7"), "{}", page.body);
    assert!(page.body.contains("python:host:42"));
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.body.contains("Allow retry") && page.body.contains("Mark done"));
    let form = |action: &'static str, attempt: &'static str, result: &'static str| {
        vec![
            ("namespace", "billing"),
            ("key", "mail-7"),
            ("attempt", attempt),
            ("action", action),
            ("result", result),
            ("note", "checked the mail log"),
        ]
    };
    let with_csrf = |mut f: Vec<(&'static str, &'static str)>, c: &str| {
        let mut owned: Vec<(String, String)> = f
            .drain(..)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        owned.push(("csrf".into(), c.to_string()));
        owned
    };
    let post = |f: Vec<(String, String)>| {
        let d = &d;
        let s = s.clone();
        async move {
            let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            d.post("/effects/resolve", &s, &refs).await
        }
    };
    // without the CSRF token: refused
    let no_csrf: Vec<(String, String)> = form("allow_retry", "1", "")
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(post(no_csrf).await.status, StatusCode::FORBIDDEN);
    // a result that is not JSON: the page says so and keeps what was typed
    let p = post(with_csrf(form("mark_done", "1", "{not json"), &csrf)).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("not JSON"), "{}", p.body);
    assert!(p.body.contains("{not json"), "{}", p.body);
    // a stale page (another attempt): refused
    let p = post(with_csrf(form("mark_done", "2", "{}"), &csrf)).await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(
        p.body.contains("attempt 2 is not the one in doubt"),
        "{}",
        p.body
    );
    let still = d.engine.effect("billing", "mail-7", &t).await.unwrap();
    assert_eq!(still.state, EffectState::Running);

    let p = post(with_csrf(
        form("mark_done", "1", r#"{"sent": true}"#),
        &csrf,
    ))
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/effects?done=marked_done");
    let done = d.engine.effect("billing", "mail-7", &t).await.unwrap();
    assert_eq!(done.state, EffectState::Done);
    assert_eq!(done.resolved_by.as_deref(), Some("root"));
    match d
        .engine
        .effect_begin("billing", "mail-7", None, None, &t)
        .await
        .unwrap()
    {
        Begin::Done { result, .. } => assert_eq!(result, json!({"sent": true})),
        b => panic!("{b:?}"),
    }
    let audit = d
        .engine
        .effect_audit("billing", "mail-7", &t)
        .await
        .unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_deref()),
        ("marked_done", Some("root"))
    );
    assert_eq!(last.data["note"], "checked the mail log");
    let page = d.get("/effects?done=marked_done", Some(&s)).await;
    assert!(page.body.contains("Marked done"), "{}", page.body);
    assert!(!page.body.contains("mail-7"), "{}", page.body);

    // allow retry on the other one: the next begin runs attempt 2
    let refs = [
        ("csrf", csrf.as_str()),
        ("namespace", "billing"),
        ("key", key.as_str()),
        ("attempt", "1"),
        ("action", "allow_retry"),
    ];
    let p = d.post("/effects/resolve", &s, &refs).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(matches!(
        d.engine
            .effect_begin("billing", &key, None, None, &t)
            .await
            .unwrap(),
        Begin::Run { attempt: 2, .. }
    ));
    d.shutdown().await;
}

conformance!(
    effects_in_doubt_are_for_admins,
    quorum_votes_in_the_dashboard,
    failed_deliveries_show_to_those_who_may_see_the_task,
    setup_link_creates_the_admin_once,
    sign_in_is_throttled_and_sign_out_ends_the_session,
    posts_need_csrf_and_a_live_session,
    reviewers_see_only_their_tasks,
    form_errors_keep_the_task_pending,
    everything_a_task_carries_is_escaped,
    event_stream_announces_changes,
    verification_rejections_reach_the_reviewer,
);
