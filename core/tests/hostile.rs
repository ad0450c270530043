//! Hostile input, on both backends: schemas built to make validation run away (catastrophic
//! patterns, exponential `$ref` fan-out, same-place `$ref` cycles, huge enums, deep
//! nesting), documents at and over every size limit, NUL bytes and invalid UTF-8, and header
//! and query abuse on every route of a real `inloop serve`. Each is refused with a clear error
//! or handled, within a time bound that only guards against blow-ups (the limits are checked
//! before any work: `core/src/schema_cost.rs`), and the server keeps answering everyone else
//! while a hostile request runs.

mod common;

use std::time::{Duration, Instant};

use common::{Db, concrete_path, serve_engine};
use inloop_core::apikeys::create_api_key;
use inloop_core::schema::{
    MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_KEY_BYTES, MAX_NAMESPACE_BYTES, MAX_SCHEMA_BYTES,
    MAX_TITLE_BYTES, canonical_json,
};
use inloop_core::server::{DASHBOARD_ROUTES, ROUTES, ServerOptions};
use inloop_core::{Answer, Error, ListFilter, NewTask};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A guard against pathological blow-ups only (debug build, a loaded 2-core machine): the
/// bound holds by construction, and the printed figures are what the code takes.
const GUARD: Duration = Duration::from_secs(2);

fn task(title: &str, response_schema: Value) -> NewTask {
    NewTask {
        title: title.into(),
        payload: json!({}),
        response_schema,
        ..Default::default()
    }
}

/// Runs `f`, prints how long it took, and fails if it took longer than [`GUARD`].
async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let r = f.await;
    let took = t.elapsed();
    eprintln!("hostile: {what}: {took:?}");
    assert!(took < GUARD, "{what} took {took:?}");
    r
}

fn answer(v: Value) -> Answer {
    Answer {
        response: v,
        by: "alice".into(),
        channel: "test".into(),
    }
}

fn code(r: Result<impl std::fmt::Debug, Error>) -> &'static str {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.code(),
    }
}

/// Exponential fan-out: `d0 = allOf[d1, d1]`, `d1 = allOf[d2, d2]` ... (2^40 applications).
fn fan_out_schema() -> Value {
    let mut defs = serde_json::Map::new();
    for i in 0..40 {
        let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
        defs.insert(format!("d{i}"), json!({"allOf": [next.clone(), next]}));
    }
    defs.insert("d40".into(), json!({"type": "integer"}));
    json!({"$defs": defs, "$ref": "#/$defs/d0"})
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

async fn schemas_that_would_run_away_are_refused(db: Db) {
    let engine = db.open().await;
    let refused = [
        ("exponential $ref fan-out", fan_out_schema()),
        ("same-place $ref cycle", json!({"$ref": "#"})),
        (
            "allOf/anyOf cycle",
            json!({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                   "$ref": "#/$defs/a"}),
        ),
        (
            "huge enum",
            json!({"enum": (0..12_000).collect::<Vec<i32>>()}),
        ),
        (
            "pattern that expands to a million states",
            json!({"type": "string", "pattern": "(a{1000}){1000}"}),
        ),
        ("remote $ref", json!({"$ref": "https://example.com/s.json"})),
        ("relative $ref", json!({"$ref": "other.json#/x"})),
    ];
    for (what, schema) in refused {
        let r = timed(what, engine.create(task(what, schema.clone()))).await;
        assert_eq!(code(r), "invalid_schema", "{what}");
        // a payload schema is held to the same rules
        let mut t = task(what, json!({"type": "object"}));
        t.payload_schema = Some(schema);
        let r = timed(what, engine.create(t)).await;
        assert_eq!(code(r), "invalid_schema", "{what} as payload_schema");
    }
    // Nesting: 10,000 levels cannot even be parsed (the parsers stop at 128); within that, a
    // schema, a payload and an answer over MAX_DEPTH are refused.
    let text = "[".repeat(10_000) + &"]".repeat(10_000);
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let deep_schema = {
        let mut s = json!({"type": "integer"});
        for _ in 0..MAX_DEPTH + 5 {
            s = json!({"items": s});
        }
        s
    };
    let r = timed("deep schema", engine.create(task("deep", deep_schema))).await;
    assert_eq!(code(r), "invalid_argument");
    let mut t = task("deep payload", json!({}));
    t.payload = nested(MAX_DEPTH + 1);
    assert_eq!(code(engine.create(t).await), "invalid_argument");
    let mut t = task("deep enough payload", json!({}));
    t.payload = nested(MAX_DEPTH);
    engine.create(t).await.unwrap();
    // A recursive schema that descends (a tree) is fine, and bounded by the instance.
    let tree = json!({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"});
    let t = engine.create(task("tree", tree)).await.unwrap().task;
    let empty_at = |depth: usize| {
        let mut v = json!([]);
        for _ in 1..depth {
            v = json!([v]);
        }
        v
    };
    let r = timed(
        "deep answer",
        engine.answer(t.id, answer(empty_at(MAX_DEPTH + 1))),
    )
    .await;
    assert_eq!(code(r), "invalid_argument");
    engine
        .answer(t.id, answer(empty_at(MAX_DEPTH)))
        .await
        .unwrap();
    engine.close().await;
}

async fn catastrophic_patterns_are_bounded(db: Db) {
    let engine = db.open().await;
    // Linear-time engine for plain patterns; look-around and back-references backtrack, up
    // to the limit.
    for (what, pattern) in [
        ("nested quantifier", "^(a+)+$"),
        ("look-ahead and alternation", "^(?!b)(a|aa)+$"),
        ("back-reference", "^(a|aa)+\\1$"),
    ] {
        let schema =
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}});
        let t = engine.create(task(what, schema)).await.unwrap().task;
        for len in [30, 5_000, 200_000] {
            let evil = "a".repeat(len) + "!";
            let r = timed(
                &format!("{what}, {len} chars"),
                engine.answer(t.id, answer(json!({ "s": evil }))),
            )
            .await;
            assert_eq!(code(r), "invalid_answer", "{what}");
        }
        // Many short hostile strings under `not` (each match fails slowly, so none is an
        // error and every one is tried): the work budget or the backtrack limit ends it.
        let schema =
            json!({"type": "array", "items": {"not": {"type": "string", "pattern": pattern}}});
        let t = engine.create(task(what, schema)).await.unwrap().task;
        let many: Vec<String> = (0..10_000).map(|_| "a".repeat(24) + "!").collect();
        let r = timed(
            &format!("{what}, 10,000 strings under not"),
            engine.answer(t.id, answer(json!(many))),
        )
        .await;
        // Accepted or refused, never slow: whichever the limits decide.
        let _ = r;
    }
    // A zod-style e-mail pattern (look-aheads) still works on real addresses.
    let zod_email = r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$";
    let schema =
        json!({"type": "object", "properties": {"e": {"type": "string", "pattern": zod_email}}});
    let t = engine.create(task("email", schema)).await.unwrap().task;
    assert_eq!(
        code(
            engine
                .answer(t.id, answer(json!({"e": "not..an@example.com"})))
                .await
        ),
        "invalid_answer"
    );
    engine
        .answer(
            t.id,
            answer(json!({"e": "first.last+tag@mail.example.com"})),
        )
        .await
        .unwrap();
    engine.close().await;
}

async fn big_instances_against_costly_schemas_are_refused_before_work(db: Db) {
    let engine = db.open().await;
    // An enum of 5,000 values per item, and 30,000 items: refused by the work budget.
    let schema = json!({"type": "array", "items": {"enum": (0..5_000).collect::<Vec<i32>>()}});
    let t = engine.create(task("wide enum", schema)).await.unwrap().task;
    let items: Vec<i32> = (0..30_000).map(|i| -i).collect();
    let r = timed(
        "30,000 items x enum of 5,000",
        engine.answer(t.id, answer(json!(items))),
    )
    .await;
    match r {
        Err(Error::InvalidAnswer { errors }) => {
            assert!(
                errors[0].message.contains("too large to validate"),
                "{errors:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A small answer to the same schema is validated as usual.
    engine.answer(t.id, answer(json!([1, 2, 3]))).await.unwrap();
    // uniqueItems over the largest array the size limit allows.
    let schema = json!({"type": "array", "uniqueItems": true});
    let t = engine.create(task("unique", schema)).await.unwrap().task;
    let items: Vec<Value> = (0..20_000).map(|i| json!({"a": i})).collect();
    timed(
        "uniqueItems over 20,000 objects",
        engine.answer(t.id, answer(json!(items))),
    )
    .await
    .unwrap();
    engine.close().await;
}

/// A JSON document whose canonical form is exactly `size` bytes: `{"s":"aaa..."}`.
fn doc_of(size: usize) -> Value {
    let v = json!({ "s": "a".repeat(size - 8) });
    assert_eq!(canonical_json(&v).len(), size);
    v
}

async fn every_size_limit_holds_at_and_over(db: Db) {
    let engine = db.open().await;
    let ok = |mut t: NewTask, key: &str| {
        t.key = Some(key.into());
        t
    };
    // payload
    let mut t = task("payload at the limit", json!({}));
    t.payload = doc_of(MAX_DOCUMENT_BYTES);
    engine.create(ok(t.clone(), "p1")).await.unwrap();
    t.payload = doc_of(MAX_DOCUMENT_BYTES + 1);
    assert_eq!(code(engine.create(ok(t, "p2")).await), "too_large");
    // schema
    let schema_of = |size: usize| json!({ "description": "a".repeat(size - 18) });
    assert_eq!(canonical_json(&schema_of(100)).len(), 100);
    engine
        .create(ok(
            task("schema at the limit", schema_of(MAX_SCHEMA_BYTES)),
            "s1",
        ))
        .await
        .unwrap();
    let r = engine
        .create(ok(
            task("schema over", schema_of(MAX_SCHEMA_BYTES + 1)),
            "s2",
        ))
        .await;
    assert_eq!(code(r), "too_large");
    // title, key, namespace
    engine
        .create(ok(task(&"t".repeat(MAX_TITLE_BYTES), json!({})), "t1"))
        .await
        .unwrap();
    let r = engine
        .create(ok(task(&"t".repeat(MAX_TITLE_BYTES + 1), json!({})), "t2"))
        .await;
    assert_eq!(code(r), "invalid_argument");
    engine
        .create(ok(task("key", json!({})), &"k".repeat(MAX_KEY_BYTES)))
        .await
        .unwrap();
    let r = engine
        .create(ok(task("key", json!({})), &"k".repeat(MAX_KEY_BYTES + 1)))
        .await;
    assert_eq!(code(r), "invalid_argument");
    let mut t = task("namespace", json!({}));
    t.namespace = Some("n".repeat(MAX_NAMESPACE_BYTES));
    engine.create(t.clone()).await.unwrap();
    t.namespace = Some("n".repeat(MAX_NAMESPACE_BYTES + 1));
    assert_eq!(code(engine.create(t).await), "invalid_argument");
    // answer
    let t = engine.create(task("answer", json!({}))).await.unwrap().task;
    let r = engine
        .answer(t.id, answer(doc_of(MAX_DOCUMENT_BYTES + 1)))
        .await;
    assert_eq!(code(r), "too_large");
    engine
        .answer(t.id, answer(doc_of(MAX_DOCUMENT_BYTES)))
        .await
        .unwrap();
    engine.close().await;
}

async fn nul_bytes_are_refused_everywhere(db: Db) {
    let engine = db.open().await;
    let mut t = task("nul in payload", json!({}));
    t.payload = json!({"a": "x\u{0}y"});
    assert_eq!(code(engine.create(t).await), "invalid_payload");
    let mut t = task("nul in a payload key", json!({}));
    t.payload = json!({"a\u{0}": 1});
    assert_eq!(code(engine.create(t).await), "invalid_payload");
    assert_eq!(
        code(engine.create(task("nul \u{0} title", json!({}))).await),
        "invalid_argument"
    );
    let mut t = task("nul key", json!({}));
    t.key = Some("k\u{0}".into());
    assert_eq!(code(engine.create(t).await), "invalid_argument");
    // In a schema: refused clearly on both backends (PostgreSQL cannot store U+0000).
    let r = engine
        .create(task("nul in schema", json!({"description": "x\u{0}"})))
        .await;
    assert_eq!(code(r), "invalid_schema");
    let t = engine
        .create(task("nul answer", json!({})))
        .await
        .unwrap()
        .task;
    let r = engine.answer(t.id, answer(json!({"note": "\u{0}"}))).await;
    assert_eq!(code(r), "invalid_answer");
    let mut a = answer(json!({}));
    a.by = "al\u{0}ice".into();
    assert_eq!(code(engine.answer(t.id, a).await), "invalid_argument");
    // In what reads take: filters, a key to look up, a sign-in name (found by the fuzzer:
    // PostgreSQL refused the NUL and the server said 503).
    let filter = |key_prefix: Option<&str>, assignee: Option<&str>| ListFilter {
        key_prefix: key_prefix.map(Into::into),
        assignee: assignee.map(Into::into),
        ..Default::default()
    };
    assert_eq!(
        code(engine.list(filter(Some("a\u{0}"), None)).await),
        "invalid_argument"
    );
    assert_eq!(
        code(engine.list(filter(None, Some("b\u{0}"))).await),
        "invalid_argument"
    );
    assert_eq!(
        code(engine.get_by_key("default", "k\u{0}").await),
        "invalid_argument"
    );
    assert_eq!(
        code(inloop_core::users::check_login(&engine, "al\u{0}ice", "pw").await),
        "unauthorized"
    );
    engine.close().await;
}

/// Sends raw bytes to `addr` and returns the status line's code (0 if the connection was
/// closed without one).
async fn raw(addr: &str, request: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn header_and_query_abuse_on_every_route(db: Db) {
    let engine = db.open().await;
    let (_, secret) = create_api_key(&engine, "fuzz", "default", true)
        .await
        .unwrap();
    let server = serve_engine(engine.clone(), ServerOptions::default()).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let auth = format!("Authorization: Bearer {secret}\r\n");
    let big = "a".repeat(100 * 1024);
    for r in ROUTES.iter().chain(DASHBOARD_ROUTES) {
        let path = concrete_path(r.path);
        let m = r.method;
        // One request: method and path, extra header lines, a body (Content-Length added).
        let req = |target: &str, headers: &[u8], body: &[u8]| -> Vec<u8> {
            [
                format!("{m} {target} HTTP/1.1\r\nHost: x\r\n").as_bytes(),
                headers,
                format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
                body,
            ]
            .concat()
        };
        let a = auth.as_bytes();
        let json_type = b"Content-Type: application/json\r\n";
        let form_type = b"Content-Type: application/x-www-form-urlencoded\r\n";
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "oversized header",
                req(&path, format!("{auth}X-Big: {big}\r\n").as_bytes(), b""),
            ),
            (
                "oversized cookie",
                req(
                    &path,
                    format!("Cookie: inloop_session={big}\r\n").as_bytes(),
                    b"",
                ),
            ),
            (
                "repeated parameters",
                req(
                    &format!("{path}?limit=1&limit=2&namespace=a&namespace=b&next=/a&next=/b"),
                    a,
                    b"",
                ),
            ),
            (
                "bad percent-encoding",
                req(
                    &format!("{path}?key_prefix=%ZZ%&status=%FF%FE&next=%00"),
                    a,
                    b"",
                ),
            ),
            (
                "invalid UTF-8 in headers",
                req(
                    &path,
                    b"Authorization: Bearer \xff\xfe\x80\r\nCookie: inloop_session=\xc3\x28\r\n",
                    b"",
                ),
            ),
            (
                "invalid UTF-8 body",
                req(&path, &[a, json_type].concat(), b"{\"a\":\"\xff\"}"),
            ),
            (
                "invalid UTF-8 form",
                req(&path, form_type, b"a=\xff\xfe&csrf=\x00&next=%FF"),
            ),
            (
                "NUL in JSON",
                req(
                    &path,
                    &[a, json_type].concat(),
                    br#"{"title":"\u0000","by":"\u0000","response":"\u0000"}"#,
                ),
            ),
            (
                "bad percent-encoding in the path",
                req(&format!("{}%FF%ZZ", path.trim_end_matches('/')), a, b""),
            ),
        ];
        for (what, req) in cases {
            let status = timed(&format!("{m} {path}: {what}"), raw(&addr, &req)).await;
            assert!(
                (400..500).contains(&status) || (200..400).contains(&status),
                "{m} {path}: {what}: status {status}"
            );
        }
    }
    // Still answering.
    assert_eq!(
        raw(
            &addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await,
        200
    );
    server.stop().await;
    engine.close().await;
}

async fn hostile_requests_do_not_stop_the_others(db: Db) {
    let engine = db.open().await;
    let (_, secret) = create_api_key(&engine, "fuzz", "default", true)
        .await
        .unwrap();
    let server = serve_engine(engine.clone(), ServerOptions::default()).await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let pattern = "^(?!b)(a|aa)+$";
    let schema = json!({"type": "array", "items": {"not": {"type": "string", "pattern": pattern}}});
    let hostile = engine.create(task("hostile", schema)).await.unwrap().task;
    let evil: Vec<String> = (0..10_000).map(|_| "a".repeat(24) + "!").collect();
    // Hostile requests, over and over, for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let (http, base, secret, stop) = (http.clone(), base.clone(), secret.clone(), stop.clone());
        let body = json!({ "response": evil, "by": "mallory" });
        let fan = json!({"title": "fan", "payload": {}, "response_schema": fan_out_schema()});
        attackers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(format!("{base}/api/v1/tasks/{}/answer", hostile.id))
                    .bearer_auth(&secret)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().as_u16() < 500, "{}", r.status());
                let r = http
                    .post(format!("{base}/api/v1/tasks"))
                    .bearer_auth(&secret)
                    .json(&fan)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 422);
                n += 2;
            }
            n
        }));
    }
    // Meanwhile, normal agents create and answer.
    let mut normal = Vec::new();
    for i in 0..20 {
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        normal.push(tokio::spawn(async move {
            let t = Instant::now();
            let r: Value = http
                .post(format!("{base}/api/v1/tasks"))
                .bearer_auth(&secret)
                .json(&json!({"title": "normal", "key": format!("n{i}"), "payload": {"i": i},
                              "response_schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = r["task"]["id"].as_str().unwrap().to_string();
            let r = http
                .post(format!("{base}/api/v1/tasks/{id}/answer"))
                .bearer_auth(&secret)
                .json(&json!({"response": {"ok": true}, "by": "bob"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            t.elapsed()
        }));
    }
    let mut slowest = Duration::ZERO;
    for h in normal {
        slowest = slowest.max(h.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut hostile_sent = 0;
    for h in attackers {
        hostile_sent += h.await.unwrap();
    }
    eprintln!(
        "hostile: slowest normal create+answer beside {hostile_sent} hostile requests: {slowest:?}"
    );
    assert!(slowest < GUARD, "{slowest:?}");
    server.stop().await;
    engine.close().await;
}

/// The validation alone (compile and check, no database) of every hostile case that is not
/// refused at compile time: the figures the 100 ms budget is about.
#[test]
fn validations_alone_are_bounded() {
    use inloop_core::schema::Schema;
    let evil = |n: usize| json!("a".repeat(n) + "!");
    let many = json!(
        (0..10_000)
            .map(|_| "a".repeat(24) + "!")
            .collect::<Vec<_>>()
    );
    let cases = [
        (
            "plain catastrophic pattern, 200 KB",
            json!({"pattern": "^(a+)+$"}),
            evil(200_000),
        ),
        (
            "look-ahead pattern, 200 KB",
            json!({"pattern": "^(?!b)(a|aa)+$"}),
            evil(200_000),
        ),
        (
            "back-reference pattern, 200 KB",
            json!({"pattern": "^(a|aa)+\\1$"}),
            evil(200_000),
        ),
        (
            "10,000 strings under not(pattern)",
            json!({"items": {"not": {"pattern": "^(?!b)(a|aa)+$"}}}),
            many.clone(),
        ),
        (
            "10,000 strings, back-reference",
            json!({"items": {"not": {"pattern": "^(a|aa)+\\1$"}}}),
            many,
        ),
        (
            "enum of 5,000 x 30,000 items",
            json!({"items": {"enum": (0..5_000).collect::<Vec<i32>>()}}),
            json!((0..30_000).map(|i| -i).collect::<Vec<i32>>()),
        ),
        (
            "uniqueItems over 20,000 objects",
            json!({"uniqueItems": true}),
            json!((0..20_000).map(|i| json!({"a": i})).collect::<Vec<_>>()),
        ),
        (
            "recursive tree, 64 deep",
            json!({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}),
            nested(MAX_DEPTH - 1),
        ),
    ];
    for (what, schema, instance) in cases {
        let t = Instant::now();
        let s = Schema::compile("response_schema", &schema).unwrap();
        let errors = s.errors(&instance);
        let took = t.elapsed();
        eprintln!(
            "hostile: validation alone: {what}: {took:?} ({} errors)",
            errors.len()
        );
        assert!(took < GUARD, "{what} took {took:?}");
    }
}

conformance!(
    schemas_that_would_run_away_are_refused,
    catastrophic_patterns_are_bounded,
    big_instances_against_costly_schemas_are_refused_before_work,
    every_size_limit_holds_at_and_over,
    nul_bytes_are_refused_everywhere,
    header_and_query_abuse_on_every_route,
    hostile_requests_do_not_stop_the_others,
);
