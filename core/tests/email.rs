//! The e-mail channel end to end, on both backends: `inloop serve`'s dispatcher sends the mail
//! over SMTP to a real sink, the test reads the link out of the quoted-printable body, GETs it
//! (the task stays pending), POSTs the form and the waiting agent resumes. Expired, reused,
//! tampered, other-recipient and unknown-user links are refused with clear pages and audited.
//!
//!   cargo test -p inloop-core --test email

mod common;
#[path = "common/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Db, Served, eventually, serve_listener};
use inloop_core::channels::email::{Link, LinkKeys};
use inloop_core::channels::{self, Channels, Settings};
use inloop_core::server::ServerOptions;
use inloop_core::users::{Role, add_user};
use inloop_core::{Engine, NewTask, Status};
use reqwest::StatusCode;
use serde_json::json;
use smtp::{Sink, decode_qp};

const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";

struct Server {
    base: String,
    http: reqwest::Client,
    _server: Served,
}

async fn start(engine: &Engine, sink: &Sink) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let env: BTreeMap<String, String> = [
        ("INLOOP_SMTP_URL", format!("smtp://127.0.0.1:{}", sink.port)),
        ("INLOOP_EMAIL_FROM", "inloop <inloop@acme.test>".to_string()),
        ("INLOOP_LINK_KEYS", format!("k1:{KEY}")),
        ("INLOOP_CHANNEL_POLL_MS", "20".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings = Settings::resolve(None, &env, Some(&base)).unwrap();
    let channels = Arc::new(Channels::new(settings).unwrap());
    let opts = ServerOptions {
        public_url: Some(base.clone()),
        channels: Some(channels),
        ..Default::default()
    };
    let server = serve_listener(engine.clone(), listener, opts);
    Server {
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _server: server,
    }
}

impl Server {
    async fn get(&self, url: &str) -> (StatusCode, String) {
        let r = self.http.get(url).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(&self, url: &str, pairs: &[(&str, &str)]) -> (StatusCode, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let r = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &self.base)
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }
}

fn approval(key: &str, notify: &[&str]) -> NewTask {
    NewTask {
        title: "Refund order A-1 (500 EUR)?".into(),
        payload: json!({"order_id": "A-1", "amount": 500, "note": "customer = \"long-time\""}),
        response_schema: json!({"type": "object",
            "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string"}},
            "required": ["approved"]}),
        key: Some(key.into()),
        notify: notify.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The link in the mail sent to `to`, without its query, after quoted-printable decoding.
fn link_in(sink: &Sink, to: &str, base: &str) -> (String, smtp::Mail) {
    let mail = sink
        .mails()
        .into_iter()
        .find(|m| m.to.iter().any(|t| t.contains(to)))
        .unwrap_or_else(|| panic!("no mail to {to}"));
    let text = decode_qp(&mail.data);
    let start = text
        .find(&format!("{base}/email/"))
        .expect("a link in the mail");
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !"?\"<".contains(*c))
        .collect();
    (link, mail)
}

fn csrf_in(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn refusals(engine: &Engine, id: uuid::Uuid) -> Vec<String> {
    engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "link_refused")
        .map(|e| e.data["reason"].as_str().unwrap().to_string())
        .collect()
}

/// The whole path: mail, link, GET (pending), POST (answered as the recipient's user, the
/// agent resumes), then the same link again (refused, audited).
async fn mail_link_answers_once(db: Db) {
    let engine = db.open().await;
    add_user(
        &engine,
        "ann",
        Some("Ann@Acme.test"),
        Role::Reviewer,
        "correct horse battery",
    )
    .await
    .unwrap();
    let sink = Sink::start().await;
    let server = start(&engine, &sink).await;
    let agent = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .ask(approval(
                    "mail-1",
                    &["email:ann@acme.test", "email:bob@acme.test"],
                ))
                .await
        })
    };
    eventually("two mails", Duration::from_secs(20), || {
        sink.mails().len() >= 2
    })
    .await;
    let task = engine.get_by_key("default", "mail-1").await.unwrap();
    let (link, mail) = link_in(&sink, "ann@acme.test", &server.base);
    assert!(
        mail.data
            .contains("Subject: [inloop] Refund order A-1 (500 EUR)?"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("multipart/alternative"));
    assert!(mail.from.contains("inloop@acme.test"), "{}", mail.from);
    assert!(
        mail.data
            .contains("Content-Transfer-Encoding: quoted-printable")
    );
    let text = decode_qp(&mail.data);
    assert!(
        text.contains("order_id: A-1") && text.contains("amount: 500"),
        "{text}"
    );
    assert!(text.contains(&format!("{link}?choice=reject")));

    // A GET (a mail scanner, or the person) renders and never answers.
    let (status, html) = server.get(&format!("{link}?choice=approve")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Refund order A-1 (500 EUR)?"));
    assert!(html.contains("You chose Approve"), "{html}");
    assert!(html.contains(r#"name="/approved" value="true""#), "{html}");
    assert!(
        html.contains("customer = &quot;long-time&quot;"),
        "escaped: {html}"
    );
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);
    let csrf = csrf_in(&html);

    // A POST without the form's CSRF token is refused.
    let (status, _) = server.post(&link, &[("/approved", "true")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .post(&link, &[("csrf", "forged"), ("/approved", "true")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);

    // Bob got a mail too but is no inloop user: a clear refusal, audited on the POST.
    let (bob_link, _) = link_in(&sink, "bob@acme.test", &server.base);
    let (status, html) = server.get(&bob_link).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        html.contains("not the e-mail address of an active inloop user"),
        "{html}"
    );
    let (status, _) = server
        .post(&bob_link, &[("csrf", "x"), ("/approved", "true")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refusals(&engine, task.id).await, vec!["unknown_recipient"]);

    // An invalid answer comes back with the form; the link stays usable.
    let (status, html) = server
        .post(&link, &[("csrf", &csrf), ("/comment", "no decision")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);

    let (status, html) = server
        .post(
            &link,
            &[("csrf", &csrf), ("/approved", "true"), ("/comment", "ok")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("recorded"));
    let done = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent resumes")
        .unwrap()
        .unwrap();
    assert_eq!(
        done.response,
        Some(json!({"approved": true, "comment": "ok"}))
    );
    assert_eq!(done.answered_by.as_deref(), Some("ann"));
    assert_eq!(done.answered_via.as_deref(), Some("email"));

    // Used: the same link neither renders nor answers again.
    let (status, html) = server.get(&link).await;
    assert_eq!(status, StatusCode::GONE, "{html}");
    assert!(html.contains("already used"));
    let (status, _) = server
        .post(&link, &[("csrf", &csrf), ("/approved", "false")])
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        engine.get(task.id).await.unwrap().response,
        Some(json!({"approved": true, "comment": "ok"}))
    );
    assert_eq!(
        refusals(&engine, task.id).await,
        vec!["unknown_recipient", "reused", "reused"]
    );
    let ds = channels::deliveries(&engine, task.id).await.unwrap();
    assert_eq!(ds.len(), 2, "e-mail has no end update: {ds:?}");
    assert!(ds.iter().all(|d| d.state == "done"));
    assert!(engine.verify_audit(task.id).await.unwrap().ok);
}

/// Links that are expired, tampered with, signed by an unknown key or for someone the task
/// was not sent to are refused with their own page; the ones we signed are audited.
async fn bad_links_are_refused(db: Db) {
    let engine = db.open().await;
    add_user(
        &engine,
        "ann",
        Some("ann@acme.test"),
        Role::Reviewer,
        "correct horse battery",
    )
    .await
    .unwrap();
    add_user(
        &engine,
        "carol",
        Some("carol@acme.test"),
        Role::Admin,
        "correct horse battery",
    )
    .await
    .unwrap();
    let sink = Sink::start().await;
    let server = start(&engine, &sink).await;
    let task = engine
        .create(approval("mail-2", &["email:ann@acme.test"]))
        .await
        .unwrap()
        .task;
    eventually("the mail", Duration::from_secs(20), || {
        !sink.mails().is_empty()
    })
    .await;
    let (link, _) = link_in(&sink, "ann@acme.test", &server.base);
    let keys = LinkKeys::new(vec![("k1".into(), KEY.as_bytes().to_vec())]);
    let url = |l: &Link, k: &LinkKeys| format!("{}/email/{}", server.base, k.sign(l));
    let base_link = Link {
        task: task.id,
        recipient: "ann@acme.test".into(),
        expires_at: inloop_core::model::now_ms() + 60_000,
        id: "manual-1".into(),
        kid: String::new(),
    };

    let expired = Link {
        expires_at: inloop_core::model::now_ms() - 1,
        ..base_link.clone()
    };
    let (status, html) = server.get(&url(&expired, &keys)).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("expired"), "{html}");

    // Carol is an admin who may answer anything, but this task was not mailed to her.
    let other = Link {
        recipient: "carol@acme.test".into(),
        ..base_link.clone()
    };
    let (status, html) = server.get(&url(&other, &keys)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("not for this task"), "{html}");

    let mut tampered = link.clone();
    let flip = if tampered.ends_with('A') { 'B' } else { 'A' };
    tampered.pop();
    tampered.push(flip);
    let (status, html) = server.get(&tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("not valid"), "{html}");
    // The payload re-signed for another task with a key the server does not have.
    let stranger = LinkKeys::new(vec![(
        "k1".into(),
        b"another-key-another-key-another-key".to_vec(),
    )]);
    let (status, _) = server.get(&url(&base_link, &stranger)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server.post(&tampered, &[("/approved", "true")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);
    assert_eq!(
        refusals(&engine, task.id).await,
        vec!["expired", "wrong_recipient"]
    );

    // Once the task ends elsewhere, the link says so instead of offering a form.
    let (_, form_page) = server.get(&link).await;
    let at = form_page
        .find("name=\"csrf\"")
        .expect("the form's CSRF field");
    let tag = &form_page[at..at + form_page[at..].find('>').unwrap()];
    let csrf = tag
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    engine
        .cancel(task.id, "ops", "api", Some("resolved by phone"))
        .await
        .unwrap();
    let (status, html) = server.get(&link).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("cancelled by ops at"), "{html}");
    // A late answer through the link is refused with the same words, and audited.
    let (status, html) = server
        .post(&link, &[("csrf", &csrf), ("/approved", "true")])
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("was cancelled by ops at"), "{html}");
    let last = engine.audit(task.id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.data["reason"].as_str()),
        ("answer_refused", Some("ended"))
    );
}

/// The task's verification rejects the answer sent from the mail's page: the reason is on the
/// form, the task stays pending, the link stays usable; a passing answer then completes it.
async fn verification_rejection_is_shown_on_the_mail_page(db: Db) {
    let engine = db.open().await;
    add_user(
        &engine,
        "ann",
        Some("ann@acme.test"),
        Role::Reviewer,
        "correct horse battery",
    )
    .await
    .unwrap();
    let sink = Sink::start().await;
    let server = start(&engine, &sink).await;
    let verification: inloop_core::verify::Verification = serde_json::from_value(json!({
        "rules": [{
            "name": "reason_for_approvals",
            "when": {"==": [{"var": "/answer/approved"}, true]},
            "check": {"nonempty": {"var": "/answer/comment"}},
            "message": "an approval needs a comment"
        }]
    }))
    .unwrap();
    let task = engine
        .create(NewTask {
            verification: Some(verification),
            ..approval("mail-verified", &["email:ann@acme.test"])
        })
        .await
        .unwrap()
        .task;
    eventually("the mail", Duration::from_secs(20), || {
        !sink.mails().is_empty()
    })
    .await;
    let (link, _) = link_in(&sink, "ann@acme.test", &server.base);
    let (_, html) = server.get(&link).await;
    let csrf = csrf_in(&html);
    let (status, html) = server
        .post(&link, &[("csrf", &csrf), ("/approved", "true")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("an approval needs a comment"), "{html}");
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);
    let (status, html) = server
        .post(
            &link,
            &[
                ("csrf", &csrf),
                ("/approved", "true"),
                ("/comment", "checked"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Completed);
}

conformance!(
    mail_link_answers_once,
    bad_links_are_refused,
    verification_rejection_is_shown_on_the_mail_page
);
