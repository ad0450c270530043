//! The REST server (`docs/api.md`), tested against a real server on 127.0.0.1:0 with a real
//! HTTP client, on both backends (see `conformance.rs` for running the PostgreSQL variants).

mod common;
#[path = "common/cut_proxy.rs"]
mod cut_proxy;

use std::time::Duration;

use common::{Db, Served, eventually, serve_engine};
use inloop_core::apikeys::{create_api_key, revoke_api_key};
use inloop_core::server::{ROUTES, ServerOptions};
use inloop_core::{Answer, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

/// A running server, its engine, and keys: `agent` (namespace ops, cannot answer),
/// `reviewer` (ops, may answer), `stranger` (namespace other, may answer).
struct Srv {
    base: String,
    http: reqwest::Client,
    engine: Engine,
    agent: String,
    reviewer: String,
    stranger: String,
    server: Served,
}

/// The three keys' secrets: agent, reviewer, stranger.
type Keys = (String, String, String);

async fn create_keys(engine: &Engine) -> Keys {
    let (_, agent) = create_api_key(engine, "agent", "ops", false).await.unwrap();
    let (_, reviewer) = create_api_key(engine, "reviewer", "ops", true)
        .await
        .unwrap();
    let (_, stranger) = create_api_key(engine, "stranger", "other", true)
        .await
        .unwrap();
    (agent, reviewer, stranger)
}

async fn start(db: &Db) -> Srv {
    let engine = db.open().await;
    let keys = create_keys(&engine).await;
    serve_on(engine, keys).await
}

/// Serves `engine` on its own 127.0.0.1:0 listener.
async fn serve_on(engine: Engine, (agent, reviewer, stranger): Keys) -> Srv {
    let server = serve_engine(engine.clone(), ServerOptions::default()).await;
    Srv {
        base: server.base.clone(),
        http: reqwest::Client::new(),
        engine,
        agent,
        reviewer,
        stranger,
        server,
    }
}

impl Srv {
    fn req(&self, method: Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Starts a long poll on task `id` with the agent's key and returns once it is parked.
    async fn parked_wait(
        &self,
        id: &str,
        timeout_ms: u64,
    ) -> tokio::task::JoinHandle<(StatusCode, Value)> {
        let r = self.req(
            Method::GET,
            &format!("/api/v1/tasks/{id}/wait?timeout_ms={timeout_ms}"),
            Some(&self.agent),
        );
        let h = tokio::spawn(async move {
            let resp = r.send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        });
        let engine = self.engine.clone();
        eventually("the wait to park", Duration::from_secs(5), || {
            engine.parked() >= 1
        })
        .await;
        h
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path, Some(key));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {text:?}"));
        (status, v)
    }

    async fn shutdown(self) {
        self.server.stop().await;
        self.engine.close().await;
    }
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"approved": {"type": "boolean"}},
        "required": ["approved"]
    })
}

fn new_task(key: &str) -> Value {
    json!({
        "key": key,
        "title": "Approve the refund?",
        "payload": {"order_id": "A-1", "amount": 500.0},
        "response_schema": schema(),
    })
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
}

async fn create(srv: &Srv, key: &str) -> String {
    let (s, v) = srv
        .call(
            Method::POST,
            "/api/v1/tasks",
            &srv.agent,
            Some(new_task(key)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["task"]["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------

async fn every_endpoint_round_trip(db: Db) {
    let srv = start(&db).await;

    // create, then replay
    let resp = srv
        .req(Method::POST, "/api/v1/tasks", Some(&srv.agent))
        .json(&new_task("refund-A-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["created"], true);
    assert_eq!(created["task"]["namespace"], "ops");
    assert_eq!(created["task"]["status"], "pending");
    let id = created["task"]["id"].as_str().unwrap().to_string();

    let resp = srv
        .req(Method::POST, "/api/v1/tasks", Some(&srv.agent))
        .json(&new_task("refund-A-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let replay: Value = resp.json().await.unwrap();
    assert_eq!(replay["created"], false);
    assert_eq!(replay["task"]["id"], id.as_str());

    // explicit namespace equal to the key's is fine
    let mut body = new_task("refund-A-2");
    body["namespace"] = json!("ops");
    let (s, v) = srv
        .call(Method::POST, "/api/v1/tasks", &srv.agent, Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id2 = v["task"]["id"].as_str().unwrap().to_string();
    // a task in another namespace, not visible to ops keys
    let (s, _) = srv
        .call(
            Method::POST,
            "/api/v1/tasks",
            &srv.stranger,
            Some(new_task("refund-A-1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // get, by key
    let (s, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["key"], "refund-A-1");
    let (s, v) = srv
        .call(
            Method::GET,
            "/api/v1/tasks/by-key/refund-A-1",
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], id.as_str());

    // list: the key's namespace only, with filters and paging
    let (s, v) = srv
        .call(Method::GET, "/api/v1/tasks", &srv.agent, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|t| t["namespace"] == "ops"));
    let (s, v) = srv
        .call(Method::GET, "/api/v1/tasks?limit=1", &srv.agent, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"][0]["id"], id2.as_str());
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks?limit=1&cursor={cursor}&status=pending&key_prefix=refund-"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(v["items"][0]["id"], id.as_str());
    assert!(v["next_cursor"].is_null());
    let (_, v) = srv
        .call(
            Method::GET,
            "/api/v1/tasks?status=completed",
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let future = inloop_core::model::now_ms() + 3_600_000;
    let (_, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks?created_after={future}"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (_, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks?created_before={future}"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    // answer (reviewer), default `by`
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            Some(json!({"response": {"approved": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["answered_by"], "apikey:reviewer");
    let via = v["answered_via"].as_str().unwrap();
    assert!(
        via.starts_with("api:") && via.len() == 40,
        "the key's id is recorded: {via}"
    );
    // a second answer: 409 conflict naming who answered
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            Some(json!({"response": {"approved": false}, "by": "bob"})),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict");
    assert_eq!(v["error"]["details"]["by"], "apikey:reviewer");

    // wait on an ended task returns at once
    let (s, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}/wait"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "completed");

    // audit
    let (s, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}/audit"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "answer_accepted", "answer_refused"]);

    // cancel, with and without a body
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id2}/cancel"),
            &srv.agent,
            Some(json!({"reason": "duplicate"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["cancel_reason"], "duplicate");
    assert_eq!(v["cancelled_by"], "apikey:agent");
    let id3 = create(&srv, "refund-A-3").await;
    let resp = srv
        .req(
            Method::POST,
            &format!("/api/v1/tasks/{id3}/cancel"),
            Some(&srv.agent),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "cancelled");
    assert!(v["cancel_reason"].is_null());
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id3}/cancel"),
            &srv.agent,
            None,
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict");

    // health
    let resp = srv.req(Method::GET, "/healthz", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let resp = srv.req(Method::GET, "/readyz", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // an unknown path is a JSON 404
    let (s, v) = srv
        .call(Method::GET, "/api/v1/nothing", &srv.agent, None)
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");

    srv.shutdown().await;
}

async fn wait_wakes_when_another_process_answers(db: Db) {
    let srv = start(&db).await;
    let id = create(&srv, "w-1").await;
    let waiting = srv.parked_wait(&id, 30000).await;
    // Another "process": a second engine on the same database answers.
    let other = db.open().await;
    other
        .answer(
            id.parse().unwrap(),
            Answer {
                response: json!({"approved": true}),
                by: "alice".into(),
                channel: "cli".into(),
            },
        )
        .await
        .unwrap();
    let answered = Instant::now();
    let (s, v) = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the long poll wakes within 2 s")
        .unwrap();
    assert!(answered.elapsed() < Duration::from_secs(2));
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["answered_by"], "alice");
    other.close().await;
    srv.shutdown().await;
}

async fn wait_limit_returns_pending(db: Db) {
    let srv = start(&db).await;
    let id = create(&srv, "w-2").await;
    let started = Instant::now();
    let (s, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}/wait?timeout_ms=300"),
            &srv.agent,
            None,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "pending");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    srv.shutdown().await;
}

async fn shutdown_ends_open_waits(db: Db) {
    let srv = start(&db).await;
    let id = create(&srv, "w-3").await;
    let waiting = srv.parked_wait(&id, 60000).await;
    let started = Instant::now();
    srv.shutdown().await;
    let (s, v) = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the long poll ends at shutdown")
        .unwrap();
    assert_error(s, &v, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(started.elapsed() < Duration::from_secs(3));
}

async fn bad_inputs_are_json_errors(db: Db) {
    let srv = start(&db).await;
    let id = create(&srv, "b-1").await;

    // malformed JSON
    let resp = srv
        .req(Method::POST, "/api/v1/tasks", Some(&srv.agent))
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EOF while parsing"),
        "{v}"
    );
    let resp = srv
        .req(
            Method::POST,
            &format!("/api/v1/tasks/{id}/answer"),
            Some(&srv.reviewer),
        )
        .body("not json")
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_error(s, &v, StatusCode::BAD_REQUEST, "invalid_json");

    // invalid task (empty title) and bad schema: 422
    let mut body = new_task("b-2");
    body["title"] = json!(" ");
    let (s, v) = srv
        .call(Method::POST, "/api/v1/tasks", &srv.agent, Some(body))
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument");
    let mut body = new_task("b-3");
    body["response_schema"] = json!({"type": "no-such-type"});
    let (s, v) = srv
        .call(Method::POST, "/api/v1/tasks", &srv.agent, Some(body))
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_schema");
    // the same key for a different request: 409 key_reused
    let mut body = new_task("b-1");
    body["title"] = json!("Something else?");
    let (s, v) = srv
        .call(Method::POST, "/api/v1/tasks", &srv.agent, Some(body))
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, "key_reused");

    // schema-invalid answer: 422 with field errors, the task stays pending
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            Some(json!({"response": {"approved": "yes"}})),
        )
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_answer");
    let errors = v["error"]["details"]["errors"].as_array().unwrap();
    assert_eq!(errors[0]["path"], "/approved", "{v}");
    let (_, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(v["status"], "pending");

    // unknown and malformed ids
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/tasks/{unknown}"),
        format!("/api/v1/tasks/{unknown}/audit"),
        format!("/api/v1/tasks/{unknown}/wait?timeout_ms=10"),
        "/api/v1/tasks/by-key/no-such-key".to_string(),
    ] {
        let (s, v) = srv.call(Method::GET, &path, &srv.agent, None).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    }
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{unknown}/answer"),
            &srv.reviewer,
            Some(json!({"response": {"approved": true}})),
        )
        .await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = srv
        .call(Method::GET, "/api/v1/tasks/not-a-uuid", &srv.agent, None)
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument");
    // bad query parameters
    for q in ["status=done", "limit=abc", "limit=0", "cursor=xyz"] {
        let (s, v) = srv
            .call(Method::GET, &format!("/api/v1/tasks?{q}"), &srv.agent, None)
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_argument");
    }

    // a body over 1 MiB: 413 before parsing
    let big = format!(
        "{{\"title\": \"x\", \"payload\": \"{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let resp = srv
        .req(Method::POST, "/api/v1/tasks", Some(&srv.agent))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "too_large");

    // authentication: missing, malformed, unknown, revoked
    let resp = srv
        .req(Method::GET, "/api/v1/tasks", None)
        .send()
        .await
        .unwrap();
    let s = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    let unknown_key = format!("ilk_{}", "A".repeat(43));
    for key in ["nope", "ilk_short", unknown_key.as_str()] {
        let (s, v) = srv.call(Method::GET, "/api/v1/tasks", key, None).await;
        assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let resp = srv
        .req(Method::GET, "/api/v1/tasks", None)
        .header("authorization", format!("Basic {}", srv.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (revoked, revoked_secret) = create_api_key(&srv.engine, "old", "ops", true)
        .await
        .unwrap();
    let (s, _) = srv
        .call(Method::GET, "/api/v1/tasks", &revoked_secret, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    revoke_api_key(&srv.engine, revoked.id).await.unwrap();
    let (s, v) = srv
        .call(Method::GET, "/api/v1/tasks", &revoked_secret, None)
        .await;
    assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    // last use is recorded
    let keys = inloop_core::apikeys::list_api_keys(&srv.engine)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .find(|k| k.id == revoked.id)
            .unwrap()
            .last_used_at
            .is_some()
    );

    // another namespace's task is not found (its existence is not revealed)
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/tasks/{id}"), None),
        (Method::GET, format!("/api/v1/tasks/{id}/audit"), None),
        (
            Method::GET,
            format!("/api/v1/tasks/{id}/wait?timeout_ms=10"),
            None,
        ),
        (Method::GET, "/api/v1/tasks/by-key/b-1".to_string(), None),
        (Method::POST, format!("/api/v1/tasks/{id}/cancel"), None),
        (
            Method::POST,
            format!("/api/v1/tasks/{id}/answer"),
            Some(json!({"response": {"approved": true}})),
        ),
    ] {
        let (s, v) = srv.call(method, &path, &srv.stranger, body).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    }
    // a body naming another namespace: 403
    let mut body = new_task("b-4");
    body["namespace"] = json!("ops");
    let (s, v) = srv
        .call(Method::POST, "/api/v1/tasks", &srv.stranger, Some(body))
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    // a key without --allow-answer cannot answer
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.agent,
            Some(json!({"response": {"approved": true}})),
        )
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (_, v) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}"),
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(v["status"], "pending");

    srv.shutdown().await;
}

/// Regression for what schemathesis found (scripts/fuzz.sh): every status the server gives to
/// a bad request (no key, a malformed id or key, malformed JSON, an oversized body, a bad
/// query) is one the document lists for that operation; a wrong method is a JSON 405 with
/// `Allow`; fields that hold any JSON are not typed as objects.
async fn every_error_status_is_documented(db: Db) {
    let srv = start(&db).await;
    let doc: Value = srv
        .req(Method::GET, "/api/v1/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let big = "x".repeat(inloop_core::server::MAX_BODY_BYTES + 1);
    let mut checked = 0;
    for r in ROUTES {
        let op = &doc["paths"][r.path][r.method.to_lowercase()];
        let documented = |s: StatusCode| op["responses"].get(s.as_str()).is_some();
        let has_body = op.get("requestBody").is_some();
        let good = r
            .path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{key}", "k");
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let mut probes: Vec<(&str, reqwest::RequestBuilder)> = vec![
            ("no key", srv.req(method.clone(), &good, None)),
            (
                "a bad key",
                srv.req(method.clone(), &good, Some("ilk_nope")),
            ),
            (
                "a bad query",
                srv.req(
                    method.clone(),
                    &format!("{good}?limit=x&timeout_ms=-1&status=nope"),
                    Some(&srv.reviewer),
                ),
            ),
        ];
        if r.path.contains("{id}") {
            let bad = r.path.replace("{id}", "not-a-uuid");
            probes.push((
                "a malformed id",
                srv.req(method.clone(), &bad, Some(&srv.reviewer)),
            ));
        }
        if r.path.contains("{key}") {
            let bad = r.path.replace("{key}", "%FF%FE");
            probes.push((
                "a key that is not UTF-8",
                srv.req(method.clone(), &bad, Some(&srv.reviewer)),
            ));
        }
        if has_body {
            probes.push((
                "malformed JSON",
                srv.req(method.clone(), &good, Some(&srv.reviewer))
                    .header("content-type", "application/json")
                    .body("{nope"),
            ));
            probes.push((
                "a body over 1 MiB",
                srv.req(method.clone(), &good, Some(&srv.reviewer))
                    .header("content-type", "application/json")
                    .body(big.clone()),
            ));
            probes.push((
                "the wrong shape",
                srv.req(method.clone(), &good, Some(&srv.reviewer))
                    .json(&json!({"by": 5, "response": 1, "title": []})),
            ));
        }
        for (what, req) in probes {
            let resp = req.send().await.unwrap();
            let s = resp.status();
            assert!(!s.is_server_error(), "{} {}: {what}: {s}", r.method, r.path);
            assert!(
                documented(s),
                "{} {}: {what}: {s} is not in the document",
                r.method,
                r.path
            );
            if !s.is_success() {
                let body: Value = resp.json().await.unwrap();
                assert!(
                    body["error"]["code"].is_string(),
                    "{} {}: {what}: {body}",
                    r.method,
                    r.path
                );
            }
            checked += 1;
        }
        // a method the path does not serve
        let resp = srv
            .req(Method::PATCH, &good, Some(&srv.reviewer))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "PATCH {good}"
        );
        assert!(resp.headers().get("allow").is_some(), "PATCH {good}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    eprintln!("server: {checked} bad requests, every status documented");
    // `result` of a begin that is done may be any JSON (null included), like an answer.
    let begin = &doc["components"]["schemas"]["Begin"];
    assert!(
        !begin.to_string().contains(r#""result":{"type":"object"}"#),
        "{begin}"
    );
    srv.shutdown().await;
}

async fn openapi_document_covers_every_route(db: Db) {
    let srv = start(&db).await;
    let resp = srv
        .req(Method::GET, "/api/v1/openapi.json", None)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for r in ROUTES {
        let item = paths
            .get(r.path)
            .unwrap_or_else(|| panic!("{} is not in the document", r.path));
        assert!(
            item.get(r.method.to_lowercase()).is_some(),
            "{} {} is not in the document",
            r.method,
            r.path
        );
    }
    // ... and nothing the router does not serve
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.path == path && r.method.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
    for name in [
        "Task",
        "NewTask",
        "Created",
        "Page",
        "AuditEvent",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "schema {name} missing"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    // every routed method answers (not 404/405) on the real server
    for r in ROUTES {
        let path = r
            .path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{key}", "k");
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let resp = srv
            .req(method, &path, Some(&srv.reviewer))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let s = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{} {path}", r.method);
        if s == StatusCode::NOT_FOUND {
            // the engine's 404 (a task id, or what else is missing), not the router's
            let details = &body["error"]["details"];
            assert!(
                details["id"].is_string() || details["what"].is_string(),
                "{} {path}: {body}",
                r.method
            );
        }
    }
    srv.shutdown().await;
}

/// Scrapes `/metrics` (no key): `sample line name{labels}` → value.
async fn scrape(srv: &Srv) -> (String, std::collections::HashMap<String, f64>) {
    let resp = srv.req(Method::GET, "/metrics", None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        assert!(
            samples.insert(name.to_string(), v).is_none(),
            "duplicate {name}"
        );
    }
    (text, samples)
}

fn sample(samples: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from {samples:#?}"))
}

async fn metrics_after_traffic(db: Db) {
    let srv = start(&db).await;
    let a = create(&srv, "m-1").await;
    let b = create(&srv, "m-2").await;
    let answer = |ok: Value| json!({ "response": ok });
    let path_a = format!("/api/v1/tasks/{a}/answer");
    let path_b = format!("/api/v1/tasks/{b}/answer");
    let (s, v) = srv
        .call(
            Method::POST,
            &path_a,
            &srv.reviewer,
            Some(answer(json!({"approved": true}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = srv
        .call(
            Method::POST,
            &path_a,
            &srv.reviewer,
            Some(answer(json!({"approved": false}))),
        )
        .await;
    assert_error(s, &v, StatusCode::CONFLICT, "conflict");
    let (s, v) = srv
        .call(
            Method::POST,
            &path_b,
            &srv.reviewer,
            Some(answer(json!({"approved": "yes"}))),
        )
        .await;
    assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "invalid_answer");
    // a key that may not answer: forbidden (the core audits it as a refused answer)
    let (s, v) = srv
        .call(
            Method::POST,
            &path_b,
            &srv.agent,
            Some(answer(json!({"approved": true}))),
        )
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = srv
        .call(Method::GET, "/api/v1/nothing", &srv.agent, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = srv
        .call(Method::GET, &format!("/api/v1/tasks/{b}"), &srv.agent, None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // one long poll parked on b
    let waiting = srv.parked_wait(&b, 30000).await;

    let (text, m) = scrape(&srv).await;
    for t in [
        "# TYPE inloop_tasks gauge",
        "# TYPE inloop_answers_total counter",
        "# TYPE inloop_waits_parked gauge",
        "# TYPE inloop_http_requests_total counter",
        "# TYPE inloop_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(t), "{t} missing:\n{text}");
    }
    for (status, n) in [
        ("pending", 1.0),
        ("completed", 1.0),
        ("timed_out", 0.0),
        ("cancelled", 0.0),
        ("verification_exhausted", 0.0),
    ] {
        assert_eq!(
            sample(&m, &format!("inloop_tasks{{status=\"{status}\"}}")),
            n,
            "{text}"
        );
    }
    assert_eq!(
        sample(&m, r#"inloop_answers_total{outcome="accepted"}"#),
        1.0
    );
    assert_eq!(
        sample(&m, r#"inloop_answers_total{outcome="refused"}"#),
        3.0
    );
    assert_eq!(sample(&m, "inloop_waits_parked"), 1.0);
    let req = |route: &str, method: &str, status: u16| {
        format!(
            "inloop_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
        )
    };
    let answer_route = "/api/v1/tasks/{id}/answer";
    for (name, n) in [
        (req("/api/v1/tasks", "POST", 201), 2.0),
        (req(answer_route, "POST", 200), 1.0),
        (req(answer_route, "POST", 409), 1.0),
        (req(answer_route, "POST", 422), 1.0),
        (req(answer_route, "POST", 403), 1.0),
        (req("/api/v1/tasks/{id}", "GET", 200), 1.0),
        (req("unmatched", "GET", 404), 1.0),
    ] {
        assert_eq!(sample(&m, &name), n, "{name}\n{text}");
    }
    // the raw path (with the id) never becomes a label; the open long poll is not counted yet
    assert!(!text.contains(&a) && !text.contains(&b), "{text}");
    assert!(!text.contains("/wait\""), "{text}");
    // the histogram of the answer route: cumulative buckets ending in +Inf = count = 4
    let labels = format!("route=\"{answer_route}\",method=\"POST\"");
    let mut last = 0.0;
    for le in [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "10", "+Inf",
    ] {
        let v = sample(
            &m,
            &format!("inloop_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
        );
        assert!(v >= last, "bucket {le} not cumulative:\n{text}");
        last = v;
    }
    assert_eq!(last, 4.0);
    assert_eq!(
        sample(
            &m,
            &format!("inloop_http_request_duration_seconds_count{{{labels}}}")
        ),
        4.0
    );
    assert!(
        sample(
            &m,
            &format!("inloop_http_request_duration_seconds_sum{{{labels}}}")
        ) > 0.0
    );

    // the long poll ends with the answer; the next scrape counts it and the first scrape
    let (s, v) = srv
        .call(
            Method::POST,
            &path_b,
            &srv.reviewer,
            Some(answer(json!({"approved": true}))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(waiting.await.unwrap().0, StatusCode::OK);
    let (text, m) = scrape(&srv).await;
    assert_eq!(
        sample(&m, r#"inloop_tasks{status="completed"}"#),
        2.0,
        "{text}"
    );
    assert_eq!(sample(&m, r#"inloop_tasks{status="pending"}"#), 0.0);
    assert_eq!(
        sample(&m, r#"inloop_answers_total{outcome="accepted"}"#),
        2.0
    );
    assert_eq!(sample(&m, "inloop_waits_parked"), 0.0);
    assert_eq!(sample(&m, &req("/metrics", "GET", 200)), 1.0);
    assert_eq!(sample(&m, &req("/api/v1/tasks/{id}/wait", "GET", 200)), 1.0);
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Two replicas on one PostgreSQL database (SQLite is one file for one host: not tested).

async fn two_replicas_share_one_database(db: Db) {
    // Sweepers that run often, so that both replicas race for every deadline.
    let opts = || inloop_core::EngineOptions {
        expiry_sweep: Duration::from_millis(50),
        ..Default::default()
    };
    let engine_a = db.open_with(opts()).await;
    let engine_b = db.open_with(opts()).await;
    let keys = create_keys(&engine_a).await;
    engine_a.start_background();
    engine_b.start_background();
    let a = serve_on(engine_a, keys.clone()).await;
    let b = serve_on(engine_b, keys).await;
    assert_ne!(a.base, b.base);

    // 1. deadlines: 20 tasks through each replica, timeouts 300-600 ms
    let create_timed = |srv: &Srv, key: String, timeout_ms: u64| {
        let mut body = new_task(&key);
        body["timeout_ms"] = json!(timeout_ms);
        let r = srv
            .req(Method::POST, "/api/v1/tasks", Some(&srv.agent))
            .json(&body);
        async move {
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::CREATED);
            let v: Value = resp.json().await.unwrap();
            v["task"]["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap()
        }
    };
    let mut creates = Vec::new();
    for i in 0..20u64 {
        creates.push(create_timed(&a, format!("ta-{i}"), 300 + i * 15));
        creates.push(create_timed(&b, format!("tb-{i}"), 300 + i * 15));
    }
    let timed: Vec<uuid::Uuid> = futures_util::future::join_all(creates).await;
    assert_eq!(timed.len(), 40);
    let started = Instant::now();
    loop {
        let n = db
            .raw_count("SELECT count(*) FROM inloop_tasks WHERE status = 'timed_out'")
            .await;
        if n == 40 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "only {n} of 40 tasks timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // let both sweepers run a few more times: a double firing would show now
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        db.raw_count("SELECT count(*) FROM inloop_audit WHERE kind = 'timed_out'")
            .await,
        40
    );
    for id in &timed {
        let events = a.engine.audit(*id).await.unwrap();
        let fired = events.iter().filter(|e| e.kind == "timed_out").count();
        assert_eq!(fired, 1, "task {id}: {events:#?}");
        let check = b.engine.verify_audit(*id).await.unwrap();
        assert!(check.ok, "task {id}: {check:?}");
    }

    // 2. every task answered through both replicas at once: one 200 and one 409 each
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(create(&a, &format!("race-{i}")).await);
    }
    let answer_via = |srv: &Srv, id: &str, by: &str| {
        let r = srv
            .req(
                Method::POST,
                &format!("/api/v1/tasks/{id}/answer"),
                Some(&srv.reviewer),
            )
            .json(&json!({"response": {"approved": true}, "by": by}));
        async move {
            let resp = r.send().await.unwrap();
            let s = resp.status();
            (s, resp.json::<Value>().await.unwrap())
        }
    };
    let races = ids.iter().map(|id| {
        let via_a = answer_via(&a, id, "alice");
        let via_b = answer_via(&b, id, "bob");
        async move { tokio::join!(via_a, via_b) }
    });
    let results = futures_util::future::join_all(races).await;
    let (mut won_a, mut won_b) = (0, 0);
    for (id, ((sa, va), (sb, vb))) in ids.iter().zip(results) {
        let mut statuses = [sa, sb];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{id}: {va} {vb}"
        );
        let (winner, loser) = if sa == StatusCode::OK {
            won_a += 1;
            (&va, &vb)
        } else {
            won_b += 1;
            (&vb, &va)
        };
        assert_eq!(winner["status"], "completed");
        assert_error(
            StatusCode::CONFLICT,
            loser,
            StatusCode::CONFLICT,
            "conflict",
        );
        let events = a.engine.audit(id.parse().unwrap()).await.unwrap();
        let accepted: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "answer_accepted")
            .collect();
        assert_eq!(accepted.len(), 1, "{id}: {events:#?}");
        assert_eq!(
            accepted[0].actor.as_deref(),
            winner["answered_by"].as_str(),
            "{id}"
        );
        assert!(b.engine.verify_audit(id.parse().unwrap()).await.unwrap().ok);
    }
    eprintln!("answer races won: replica A {won_a}, replica B {won_b}");
    // each replica counts its own answers; together 20 accepted, 20 refused
    let (_, ma) = scrape(&a).await;
    let (_, mb) = scrape(&b).await;
    let total = |outcome: &str| {
        let name = format!("inloop_answers_total{{outcome=\"{outcome}\"}}");
        sample(&ma, &name) + sample(&mb, &name)
    };
    assert_eq!(total("accepted"), 20.0);
    assert_eq!(total("refused"), 20.0);
    // the task gauge comes from the shared database: both replicas agree
    for status in ["pending", "completed", "timed_out"] {
        let name = format!("inloop_tasks{{status=\"{status}\"}}");
        assert_eq!(sample(&ma, &name), sample(&mb, &name), "{name}");
    }
    assert_eq!(sample(&ma, r#"inloop_tasks{status="completed"}"#), 20.0);
    assert_eq!(sample(&ma, r#"inloop_tasks{status="timed_out"}"#), 40.0);

    // 3. a long poll on A is woken by an answer through B
    let id = create(&b, "cross-wake").await;
    let waiting = a.parked_wait(&id, 30000).await;
    let (s, v) = answer_via(&b, &id, "carol").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let answered = Instant::now();
    let (s, v) = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the long poll on A wakes within 2 s of the answer through B")
        .unwrap();
    eprintln!("cross-replica wake took {:?}", answered.elapsed());
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["answered_by"], "carol");

    a.shutdown().await;
    b.shutdown().await;
}

mod replicas {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_two_replicas_share_one_database() {
        crate::common::run_postgres(
            "two_replicas_share_one_database",
            crate::two_replicas_share_one_database,
        )
        .await;
    }
}

/// Claims through the API: the agent's key may not claim; a reviewer key claims for a person,
/// blocks other answerers (403, audited), releases; a stranger's key sees nothing; the
/// assignee filter lists what is assigned.
async fn claim_and_release_through_the_api(db: Db) {
    let srv = start(&db).await;
    let id = create(&srv, "claimable").await;
    let claim = format!("/api/v1/tasks/{id}/claim");
    let release = format!("/api/v1/tasks/{id}/release");
    let (s, v) = srv.call(Method::POST, &claim, &srv.agent, None).await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (s, v) = srv.call(Method::POST, &claim, &srv.stranger, None).await;
    assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    let (s, v) = srv
        .call(
            Method::POST,
            &claim,
            &srv.reviewer,
            Some(json!({"by": "alice"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["claimed_by"], "alice");
    assert!(v["claimed_at"].is_string());
    // someone else through the same key: refused while alice holds it
    let (s, v) = srv
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id}/answer"),
            &srv.reviewer,
            Some(json!({"response": {"approved": true}, "by": "bob"})),
        )
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (s, v) = srv
        .call(
            Method::POST,
            &release,
            &srv.reviewer,
            Some(json!({"by": "bob"})),
        )
        .await;
    assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
    let (s, v) = srv
        .call(
            Method::POST,
            &release,
            &srv.reviewer,
            Some(json!({"by": "alice"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["claimed_by"].is_null());
    let (_, audit) = srv
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}/audit"),
            &srv.agent,
            None,
        )
        .await;
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "claimed", "answer_refused", "released"]);

    let mut assigned = new_task("for-carol");
    assigned["assign_to"] = json!(["Carol@acme.com"]);
    let (s, _) = srv
        .call(Method::POST, "/api/v1/tasks", &srv.agent, Some(assigned))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, page) = srv
        .call(
            Method::GET,
            "/api/v1/tasks?assignee=carol%40acme.com",
            &srv.agent,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["for-carol"]);
    srv.shutdown().await;
}

/// Found by the chaos suite (tests/chaos, PostgreSQL stopped under a server): while the
/// database was away, `/readyz` took the pool's whole acquire timeout (10 s) to say 503,
/// longer than any probe waits. It must say 503 within its own bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_says_503_promptly_while_the_database_is_away() {
    common::run_postgres("readyz_says_503_promptly", |db: Db| async move {
        let (proxy, url) = cut_proxy::CutProxy::in_front_of(&db.url).await;
        let engine = Db {
            url,
            backend: db.backend,
        }
        .open()
        .await;
        let srv = serve_on(engine, create_keys(&db.open().await).await).await;
        let resp = srv.req(Method::GET, "/readyz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        proxy.cut();
        // The first probe may meet a pooled connection that just broke (fast); the later
        // ones wait for a new connection, which never comes.
        for probe in 0..3 {
            let t = Instant::now();
            let resp = srv.req(Method::GET, "/readyz", None).send().await.unwrap();
            let took = t.elapsed();
            assert_eq!(
                resp.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "probe {probe}"
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "database", "{body}");
            assert!(
                took < Duration::from_secs(4),
                "probe {probe}: /readyz took {took:?}"
            );
        }
        srv.shutdown().await;
    })
    .await;
}

conformance!(
    claim_and_release_through_the_api,
    metrics_after_traffic,
    every_endpoint_round_trip,
    wait_wakes_when_another_process_answers,
    wait_limit_returns_pending,
    shutdown_ends_open_waits,
    bad_inputs_are_json_errors,
    openapi_document_covers_every_route,
    every_error_status_is_documented,
);
