//! The Slack channel end to end, on both backends, against a fake Slack Web API on loopback
//! (checks the bot token, records every call's JSON, can fail on demand) and interactivity
//! requests built and signed exactly as Slack builds them (form-encoded `payload`).
//!
//!   cargo test -p inloop-core --test slack

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use common::{Db, Served, eventually, serve_listener};
use inloop_core::channels::slack::sign_request;
use inloop_core::channels::{Channels, Settings};
use inloop_core::server::ServerOptions;
use inloop_core::users::{Role, add_user};
use inloop_core::{Engine, NewTask, Status};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-1234-test-token";
const SECRET: &str = "8f742231b10e8888abcd99e1e1e1e1e1";

#[derive(Default)]
struct FakeSlack {
    calls: Mutex<Vec<(String, Value)>>,
    /// Answer `ratelimited` to this many chat.postMessage calls first.
    fail_posts: Mutex<usize>,
}

impl FakeSlack {
    fn calls(&self, method: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

async fn api(
    State(fake): State<Arc<FakeSlack>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return Json(json!({"ok": false, "error": "invalid_auth"}));
    }
    fake.calls
        .lock()
        .unwrap()
        .push((method.clone(), body.clone()));
    Json(match method.as_str() {
        "chat.postMessage" => {
            let mut fail = fake.fail_posts.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                json!({"ok": false, "error": "ratelimited"})
            } else {
                json!({"ok": true, "channel": "C0OPS", "ts": "1700000000.000100",
                       "message": {"text": body["text"]}})
            }
        }
        "chat.update" => json!({"ok": true, "channel": body["channel"], "ts": body["ts"]}),
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1700000002.000300"}),
        "users.info" => {
            let email = match body["user"].as_str() {
                Some("UANN") => "Ann@Acme.test",
                Some("UEVE") => "eve@elsewhere.test",
                _ => "eve@elsewhere.test",
            };
            json!({"ok": true, "user": {"id": body["user"], "profile": {"email": email}}})
        }
        "auth.test" => json!({"ok": true, "user": "inloop", "team": "Acme"}),
        "views.open" => json!({"ok": true, "view": {"id": "V1"}}),
        _ => json!({"ok": false, "error": "unknown_method"}),
    })
}

struct Env {
    base: String,
    fake: Arc<FakeSlack>,
    http: reqwest::Client,
    _server: Served,
}

async fn start(engine: &Engine) -> Env {
    let fake = Arc::new(FakeSlack::default());
    *fake.fail_posts.lock().unwrap() = 1;
    let fl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}/api", fl.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/{method}", axum::routing::post(api))
        .with_state(Arc::clone(&fake));
    tokio::spawn(async move { axum::serve(fl, app).await.unwrap() });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let env: BTreeMap<String, String> = [
        ("INLOOP_SLACK_BOT_TOKEN", TOKEN.to_string()),
        ("INLOOP_SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("INLOOP_SLACK_API_URL", api_url),
        ("INLOOP_CHANNEL_RETRY_BASE_MS", "20".to_string()),
        ("INLOOP_CHANNEL_POLL_MS", "20".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let channels =
        Arc::new(Channels::new(Settings::resolve(None, &env, Some(&base)).unwrap()).unwrap());
    assert!(channels.check().await.unwrap()[0].contains("slack as inloop in Acme"));
    let opts = ServerOptions {
        public_url: Some(base.clone()),
        channels: Some(channels),
        ..Default::default()
    };
    let server = serve_listener(engine.clone(), listener, opts);
    Env {
        base,
        fake,
        http: reqwest::Client::new(),
        _server: server,
    }
}

/// A `block_actions` request body as Slack sends it: form-encoded, one `payload` field.
fn click_body(task: &str, user: &str, action: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T1"},
        "api_app_id": "A1", "team": {"id": "T1", "domain": "acme"},
        "channel": {"id": "C0OPS", "name": "ops"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0OPS"},
        "trigger_id": "123.456.abc", "response_url": "https://hooks.slack.com/actions/T1/1/xyz",
        "actions": [{"type": "button", "block_id": format!("inloop:{task}"), "action_id": action,
                     "value": task, "text": {"type": "plain_text", "text": "Approve"},
                     "action_ts": "1700000001.000200"}],
        "state": {"values": {}}
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

impl Env {
    async fn post(&self, body: &str, ts: i64, sig: &str) -> StatusCode {
        self.http
            .post(format!("{}/slack/interactivity", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn signed_full(&self, body: &str) -> (StatusCode, String) {
        let ts = chrono::Utc::now().timestamp();
        let sig = sign_request(SECRET, ts, body.as_bytes());
        let r = self
            .http
            .post(format!("{}/slack/interactivity", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn signed(&self, body: &str) -> (StatusCode, i64, String) {
        let ts = chrono::Utc::now().timestamp();
        let sig = sign_request(SECRET, ts, body.as_bytes());
        (self.post(body, ts, &sig).await, ts, sig)
    }
}

fn approval(key: &str) -> NewTask {
    NewTask {
        title: "Refund order A-1 (500 EUR)?".into(),
        payload: json!({"order_id": "A-1", "amount": 500}),
        response_schema: json!({"type": "object",
            "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string"}},
            "required": ["approved"]}),
        key: Some(key.into()),
        notify: vec!["slack:#ops".into()],
        ..Default::default()
    }
}

async fn refusals(engine: &Engine, id: uuid::Uuid) -> Vec<Value> {
    engine
        .audit(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "answer_refused")
        .map(|e| e.data)
        .collect()
}

/// An agent on `notify=["slack:#ops"]` is answered by a signed click and resumes; the message
/// is then replaced. Forged, stale and replayed requests change nothing; a click from a Slack
/// user who is no inloop user is refused and audited.
async fn slack_click_answers_and_updates(db: Db) {
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
    let env = start(&engine).await;
    let agent = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.ask(approval("slack-1")).await })
    };
    let fake = Arc::clone(&env.fake);
    eventually("the message", Duration::from_secs(20), || {
        fake.calls("chat.postMessage").len() >= 2
    })
    .await;
    let task = engine.get_by_key("default", "slack-1").await.unwrap();
    let id = task.id.to_string();
    let post = &env.fake.calls("chat.postMessage")[1];
    assert_eq!(post["channel"], "#ops");
    assert!(post["text"].as_str().unwrap().contains("Refund order A-1"));
    assert!(
        post["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("amount: 500")
    );
    let buttons = post["blocks"][1]["elements"].as_array().unwrap();
    assert_eq!(buttons[0]["action_id"], "inloop.approve");
    assert_eq!(buttons[0]["value"], id.as_str());
    assert_eq!(buttons[1]["action_id"], "inloop.reject");
    assert_eq!(buttons[1]["confirm"]["confirm"]["text"], "Reject");
    assert_eq!(buttons[2]["url"], format!("{}/tasks/{id}", env.base));
    let mut ds = Vec::new();
    for _ in 0..400 {
        ds = inloop_core::channels::deliveries(&engine, task.id)
            .await
            .unwrap();
        if ds[0].state == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (ds[0].attempts, ds[0].result.clone()),
        (
            2,
            Some(json!({"channel": "C0OPS", "ts": "1700000000.000100"}))
        )
    );

    // Forged and stale requests are refused before parsing; the task is unchanged.
    let body = click_body(&id, "UANN", "inloop.approve");
    let now = chrono::Utc::now().timestamp();
    let forged = sign_request("another-secret-another-secret-00", now, body.as_bytes());
    assert_eq!(
        env.post(&body, now, &forged).await,
        StatusCode::UNAUTHORIZED
    );
    let stale = sign_request(SECRET, now - 301, body.as_bytes());
    assert_eq!(
        env.post(&body, now - 301, &stale).await,
        StatusCode::UNAUTHORIZED
    );
    let tampered = body.replace("inloop.approve", "inloop.reject");
    let sig = sign_request(SECRET, now, body.as_bytes());
    assert_eq!(
        env.post(&tampered, now, &sig).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(env.post(&body, now, "").await, StatusCode::UNAUTHORIZED);
    let huge = format!("payload={}", "x".repeat(300 * 1024));
    let sig = sign_request(SECRET, now, huge.as_bytes());
    assert_eq!(
        env.post(&huge, now, &sig).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let (status, _, _) = env.signed("payload=%7Bnot%20json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Eve is a Slack user but no inloop user: refused, audited.
    let (status, _, _) = env.signed(&click_body(&id, "UEVE", "inloop.approve")).await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = refusals(&engine, task.id).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen,
        vec![json!({"reason": "unknown_slack_user", "slack_user": "UEVE"})]
    );
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);

    // Ann approves: acknowledged at once, the agent resumes.
    let (status, ts, sig) = env.signed(&body).await;
    assert_eq!(status, StatusCode::OK);
    let done = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent resumes")
        .unwrap()
        .unwrap();
    assert_eq!(done.response, Some(json!({"approved": true})));
    assert_eq!(
        (done.answered_by.as_deref(), done.answered_via.as_deref()),
        (Some("ann"), Some("slack"))
    );

    // The same request again (a replay, or Slack's retry): acknowledged, not acted on.
    assert_eq!(env.post(&body, ts, &sig).await, StatusCode::OK);
    // The same click delivered anew (fresh signature): the core refuses a second answer.
    let (status, _, _) = env.signed(&click_body(&id, "UANN", "inloop.reject")).await;
    assert_eq!(status, StatusCode::OK);
    let mut n = 0;
    for _ in 0..400 {
        n = refusals(&engine, task.id).await.len();
        if n >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        refusals(&engine, task.id).await.len(),
        2,
        "the replay was ignored, the new click refused"
    );
    assert_eq!(n, 2);
    assert_eq!(
        engine.get(task.id).await.unwrap().response,
        Some(json!({"approved": true}))
    );

    // The message is replaced through the outbox.
    eventually("chat.update", Duration::from_secs(20), || {
        !fake.calls("chat.update").is_empty()
    })
    .await;
    let update = &env.fake.calls("chat.update")[0];
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("C0OPS"), Some("1700000000.000100"))
    );
    let line = update["blocks"][1]["elements"][0]["text"].as_str().unwrap();
    assert!(line.starts_with("Approved by ann at "), "{line}");
    assert!(
        update["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions")
    );
}

/// Answered in the dashboard (here: another channel) or timed out, the Slack message says so.
async fn slack_message_follows_other_ends(db: Db) {
    let engine = db.open().await;
    let env = start(&engine).await;
    let a = engine.create(approval("slack-2")).await.unwrap().task;
    let mut t = approval("slack-3");
    t.timeout_ms = Some(300);
    let b = engine.create(t).await.unwrap().task;
    let fake = Arc::clone(&env.fake);
    eventually("two messages", Duration::from_secs(20), || {
        fake.calls("chat.postMessage").len() >= 3
    })
    .await;
    engine
        .answer(
            a.id,
            inloop_core::Answer {
                response: json!({"approved": false}),
                by: "bob".into(),
                channel: "dashboard".into(),
            },
        )
        .await
        .unwrap();
    eventually("two updates", Duration::from_secs(20), || {
        fake.calls("chat.update").len() >= 2
    })
    .await;
    let lines: Vec<String> = env
        .fake
        .calls("chat.update")
        .iter()
        .map(|u| {
            u["blocks"][1]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Rejected in the dashboard by bob at ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Timed out at ")),
        "{lines:?}"
    );
    assert_eq!(engine.get(b.id).await.unwrap().status, Status::TimedOut);
}

/// A `view_submission` as Slack sends it for the answer modal.
fn submission_body(task: &str, user: &str, values: Value) -> String {
    let payload = json!({
        "type": "view_submission",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T1"},
        "api_app_id": "A1", "team": {"id": "T1", "domain": "acme"},
        "view": {"id": "V1", "type": "modal", "callback_id": "inloop.answer",
                 "private_metadata": task, "state": {"values": values}}
    });
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
}

/// A typed answer: "Respond…" opens a modal generated from the schema (`views.open` with the
/// click's trigger); a submission the core refuses comes back as inline errors; a valid one
/// answers and the agent resumes.
async fn slack_modal_typed_answer(db: Db) {
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
    let env = start(&engine).await;
    let mut t = approval("slack-4");
    t.response_schema = json!({"type": "object",
        "properties": {
            "amount": {"type": "integer", "minimum": 1, "maximum": 1000, "title": "Amount (EUR)"},
            "priority": {"type": "string", "enum": ["low", "high"]},
            "note": {"type": "string", "maxLength": 100, "description": "Shown to the customer"},
            "notify_customer": {"type": "boolean"}},
        "required": ["amount", "priority"]});
    let agent = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.ask(t).await })
    };
    let fake = Arc::clone(&env.fake);
    eventually("the message", Duration::from_secs(20), || {
        fake.calls("chat.postMessage").len() >= 2
    })
    .await;
    let task = engine.get_by_key("default", "slack-4").await.unwrap();
    let id = task.id.to_string();
    let buttons = env.fake.calls("chat.postMessage")[1]["blocks"][1]["elements"].clone();
    assert_eq!(buttons[0]["action_id"], "inloop.respond");
    assert_eq!(buttons[0]["text"]["text"], "Respond…");

    let (status, _, _) = env.signed(&click_body(&id, "UANN", "inloop.respond")).await;
    assert_eq!(status, StatusCode::OK);
    eventually("views.open", Duration::from_secs(10), || {
        !fake.calls("views.open").is_empty()
    })
    .await;
    let open = &env.fake.calls("views.open")[0];
    assert_eq!(open["trigger_id"], "123.456.abc");
    let view = &open["view"];
    assert_eq!(
        (view["type"].as_str(), view["private_metadata"].as_str()),
        (Some("modal"), Some(id.as_str()))
    );
    let block = |k: &str| {
        view["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["block_id"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(block("amount")["element"]["type"], "number_input");
    assert_eq!(block("amount")["element"]["is_decimal_allowed"], false);
    assert_eq!(block("amount")["element"]["min_value"], "1");
    assert_eq!(block("amount")["label"]["text"], "Amount (EUR)");
    assert_eq!(block("amount")["optional"], false);
    assert_eq!(block("priority")["element"]["type"], "radio_buttons");
    assert_eq!(block("note")["hint"]["text"], "Shown to the customer");
    assert_eq!(block("note")["optional"], true);
    assert_eq!(block("notify_customer")["element"]["type"], "checkboxes");

    let values = |amount: &str| {
        json!({
            "amount": {"v": {"type": "number_input", "value": amount}},
            "priority": {"v": {"type": "radio_buttons", "selected_option": {"text": {"type": "plain_text", "text": "high"}, "value": "1"}}},
            "note": {"v": {"type": "plain_text_input", "value": "rush"}},
            "notify_customer": {"v": {"type": "checkboxes", "selected_options": [{"value": "true"}]}}
        })
    };
    // Out of range: the core's validation, shown inline on the field.
    let (status, body) = env
        .signed_full(&submission_body(&id, "UANN", values("5000")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["response_action"], "errors", "{body}");
    assert!(
        v["errors"]["amount"].as_str().unwrap().contains("1000"),
        "{body}"
    );
    let (_, body) = env
        .signed_full(&submission_body(&id, "UANN", values("12x")))
        .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"]["amount"], "enter a whole number", "{body}");
    let (_, body) = env
        .signed_full(&submission_body(&id, "UEVE", values("250")))
        .await;
    assert!(body.contains("not an inloop user"), "{body}");
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);

    let (status, body) = env
        .signed_full(&submission_body(&id, "UANN", values("250")))
        .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, ""),
        "an empty 200 closes the modal"
    );
    let done = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent resumes")
        .unwrap()
        .unwrap();
    assert_eq!(
        done.response,
        Some(json!({"amount": 250, "priority": "high", "note": "rush", "notify_customer": true}))
    );
    assert_eq!(done.answered_via.as_deref(), Some("slack"));
    eventually("chat.update", Duration::from_secs(20), || {
        !fake.calls("chat.update").is_empty()
    })
    .await;
    let line = env.fake.calls("chat.update")[0]["blocks"][1]["elements"][0]["text"].clone();
    assert!(
        line.as_str().unwrap().starts_with("Answered by ann at "),
        "{line}"
    );
}

/// A click the task's verification rejects: the task stays pending, and the person who
/// clicked is told why in a message only they see (`chat.postEphemeral`).
async fn slack_click_rejected_by_verification_tells_the_user(db: Db) {
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
    let env = start(&engine).await;
    let verification: inloop_core::verify::Verification = serde_json::from_value(json!({
        "rules": [{
            "name": "no_approvals_today",
            "check": {"==": [{"var": "/answer/approved"}, false]},
            "message": "refunds are frozen until the audit ends"
        }]
    }))
    .unwrap();
    let task = engine
        .create(NewTask {
            verification: Some(verification),
            ..approval("slack-verified")
        })
        .await
        .unwrap()
        .task;
    let fake = Arc::clone(&env.fake);
    eventually("the message", Duration::from_secs(20), || {
        fake.calls("chat.postMessage").len() >= 2
    })
    .await;
    let (status, _, _) = env
        .signed(&click_body(&task.id.to_string(), "UANN", "inloop.approve"))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the ephemeral reply", Duration::from_secs(20), || {
        !fake.calls("chat.postEphemeral").is_empty()
    })
    .await;
    let reply = &env.fake.calls("chat.postEphemeral")[0];
    assert_eq!(
        (reply["channel"].as_str(), reply["user"].as_str()),
        (Some("C0OPS"), Some("UANN"))
    );
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("refunds are frozen until the audit ends"),
        "{text}"
    );
    assert_eq!(engine.get(task.id).await.unwrap().status, Status::Pending);
}

/// 2 of 3 across Slack and the dashboard: ann's click in Slack is recorded as her vote (she is
/// told it counted and who is still asked), bob's approval in the dashboard completes the task,
/// the Slack message is replaced, and ann's late click is refused with who answered and when.
/// A Slack user outside the approvers is refused and told why.
async fn slack_quorum_with_the_dashboard(db: Db) {
    let engine = db.open().await;
    for (name, email) in [
        ("ann", "ann@acme.test"),
        ("bob", "bob@acme.test"),
        ("eve", "eve@elsewhere.test"),
    ] {
        add_user(
            &engine,
            name,
            Some(email),
            Role::Reviewer,
            "correct horse battery",
        )
        .await
        .unwrap();
    }
    let env = start(&engine).await;
    let policy: inloop_core::policy::Policy = serde_json::from_value(json!({
        "approvers": {"any_of": ["ann@acme.test", "bob", "role:finance"], "required": 2}
    }))
    .unwrap();
    let agent = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .ask(NewTask {
                    policy: Some(policy),
                    ..approval("slack-quorum")
                })
                .await
        })
    };
    let fake = Arc::clone(&env.fake);
    eventually("the message", Duration::from_secs(20), || {
        fake.calls("chat.postMessage").len() >= 2
    })
    .await;
    let task = engine.get_by_key("default", "slack-quorum").await.unwrap();
    let id = task.id.to_string();

    // eve (a Slack user mapped to an inloop user who is no approver) is refused, and told.
    let (status, _, _) = env.signed(&click_body(&id, "UEVE", "inloop.approve")).await;
    assert_eq!(status, StatusCode::OK);
    eventually("eve's ephemeral reply", Duration::from_secs(20), || {
        !fake.calls("chat.postEphemeral").is_empty()
    })
    .await;
    let text = env.fake.calls("chat.postEphemeral")[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("not accepted"), "{text}");

    let (status, _, _) = env.signed(&click_body(&id, "UANN", "inloop.approve")).await;
    assert_eq!(status, StatusCode::OK);
    eventually("ann's vote", Duration::from_secs(20), || {
        fake.calls("chat.postEphemeral").len() >= 2
    })
    .await;
    let reply = &env.fake.calls("chat.postEphemeral")[1];
    assert_eq!(reply["user"], "UANN");
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("1 of 2 approvals"), "{text}");
    assert!(text.contains("Still asked: bob, role:finance"), "{text}");
    let t = engine.get(task.id).await.unwrap();
    assert_eq!(t.status, Status::Pending);
    assert_eq!(
        (t.votes[0].by.as_str(), t.votes[0].channel.as_str()),
        ("ann", "slack")
    );

    // bob approves in the dashboard: the task completes, the agent resumes.
    let (session, csrf) =
        common::dashboard_sign_in(&env.base, "bob", "correct horse battery").await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/tasks/{id}/answer", env.base))
        .header("cookie", format!("inloop_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(common::form_body(&[
            ("csrf", csrf.as_str()),
            ("/approved", "true"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let done = agent.await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.answered_by.as_deref(), Some("bob"));
    let channels: Vec<_> = done
        .votes
        .iter()
        .map(|v| (v.by.as_str(), v.channel.as_str()))
        .collect();
    assert_eq!(channels, [("ann", "slack"), ("bob", "dashboard")]);
    eventually("the message update", Duration::from_secs(20), || {
        !fake.calls("chat.update").is_empty()
    })
    .await;
    let update = env.fake.calls("chat.update")[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        update.contains("Approved in the dashboard by bob"),
        "{update}"
    );

    // ann clicks again: late, refused, told who answered and when.
    let (status, _, _) = env.signed(&click_body(&id, "UANN", "inloop.reject")).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the late reply", Duration::from_secs(20), || {
        fake.calls("chat.postEphemeral").len() >= 3
    })
    .await;
    let text = env.fake.calls("chat.postEphemeral")[2]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("already answered by bob at"), "{text}");
    assert_eq!(engine.get(task.id).await.unwrap().votes.len(), 2);
}

conformance!(
    slack_quorum_with_the_dashboard,
    slack_click_rejected_by_verification_tells_the_user,
    slack_click_answers_and_updates,
    slack_message_follows_other_ends,
    slack_modal_typed_answer
);
