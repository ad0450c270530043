use super::*;
use crate::model::now_ms;

fn roundtrip(e: Error) -> Error {
    let body =
        json!({"error": {"code": e.code(), "message": e.to_string(), "details": e.details()}});
    error_from_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        body.to_string().as_bytes(),
    )
}

#[test]
fn server_errors_become_the_core_variants() {
    let id = Uuid::now_v7();
    let at = now_ms();
    let errors = vec![FieldError {
        path: "/approved".into(),
        message: "\"yes\" is not of type \"boolean\"".into(),
    }];
    let cases = vec![
        Error::InvalidAnswer {
            errors: errors.clone(),
        },
        Error::InvalidPayload { errors },
        Error::InvalidSchema {
            which: "response_schema",
            message: "bad (really): x".into(),
        },
        Error::InvalidArgument("limit must be 1..=1000, not 0".into()),
        Error::TooLarge {
            what: "payload",
            size: 2_000_000,
            limit: 1_048_576,
        },
        Error::NotFound(id.to_string()),
        Error::KeyReused {
            namespace: "default".into(),
            key: "k".into(),
            existing: id,
            existing_digest: "a".repeat(64),
            new_digest: "b".repeat(64),
        },
        Error::Conflict {
            id,
            status: Status::Completed,
            by: Some("alice".into()),
            at,
        },
        Error::TimedOut { id, at },
        Error::Cancelled {
            id,
            by: Some("bob".into()),
            at,
            reason: Some("no longer needed".into()),
        },
        Error::Cancelled {
            id,
            by: None,
            at,
            reason: None,
        },
        Error::EffectInDoubt {
            namespace: "default".into(),
            key: "charge-A-1".into(),
            attempt: 2,
            started_at: at,
            started_by: Some("python:host:42".into()),
        },
        Error::EffectInDoubt {
            namespace: "default".into(),
            key: "k".into(),
            attempt: 1,
            started_at: at,
            started_by: None,
        },
        Error::EffectConflict {
            namespace: "default".into(),
            key: "k".into(),
            state: "done".into(),
            reason: "this attempt no longer holds it".into(),
        },
        Error::DigestMismatch {
            task_id: id.to_string(),
            expected: "a".repeat(64),
            actual: "b".repeat(64),
        },
        Error::TooLarge {
            what: "result",
            size: 300_000,
            limit: 262_144,
        },
        Error::Unauthorized("unknown API key".into()),
        Error::Forbidden("this key may not answer".into()),
        Error::Config("no".into()),
        Error::Database("pool timed out".into()),
        Error::Internal("oops".into()),
    ];
    for e in cases {
        let want = format!("{e:?}");
        let back = roundtrip(e);
        assert!(
            !matches!(back, Error::Remote { .. }),
            "not rebuilt: {want} -> {back:?}"
        );
        assert_eq!(format!("{back:?}"), want);
    }
}

#[test]
fn unknown_codes_keep_code_message_and_details() {
    let body =
        json!({"error": {"code": "unauthorized", "message": "bad key", "details": {"hint": 1}}});
    let e = error_from_response(StatusCode::UNAUTHORIZED, body.to_string().as_bytes());
    assert!(matches!(e, Error::Remote { .. }));
    assert_eq!(e.code(), "unauthorized");
    assert_eq!(e.to_string(), "bad key");
    assert_eq!(e.details(), json!({"hint": 1}));

    let body = json!({"error": {"code": "forbidden", "message": "other namespace"}});
    let e = error_from_response(StatusCode::FORBIDDEN, body.to_string().as_bytes());
    assert_eq!(e.code(), "forbidden");
    assert_eq!(e.details(), json!({}));

    let body = json!({"error": {"code": "brand_new", "message": "?", "details": {}}});
    let e = error_from_response(StatusCode::IM_A_TEAPOT, body.to_string().as_bytes());
    assert!(matches!(&e, Error::Remote { code, .. } if code == "brand_new"));
    assert_eq!(e.code(), "internal");

    // A known code whose message does not match the core's stays Remote, message intact.
    let body = json!({"error": {"code": "invalid_argument", "message": "custom words"}});
    let e = error_from_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        body.to_string().as_bytes(),
    );
    assert_eq!(e.code(), "invalid_argument");
    assert_eq!(e.to_string(), "custom words");
}

#[test]
fn bare_statuses_map_by_status() {
    let e = error_from_response(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
    assert_eq!(e.code(), "database");
    let e = error_from_response(StatusCode::UNAUTHORIZED, b"");
    assert_eq!(e.code(), "unauthorized");
    let e = error_from_response(StatusCode::NOT_FOUND, b"nope");
    assert_eq!(e.code(), "not_found");
    let e = error_from_response(StatusCode::INTERNAL_SERVER_ERROR, b"x");
    assert_eq!(e.code(), "internal");
}

#[test]
fn statuses_are_classified() {
    for s in [502, 503, 504] {
        assert_eq!(classify_status(s), Failure::Transient, "{s}");
    }
    for s in [400, 401, 403, 404, 409, 410, 413, 422, 500] {
        assert_eq!(classify_status(s), Failure::Final, "{s}");
    }
}

#[test]
fn config_is_checked() {
    assert_eq!(
        RemoteEngine::new("ftp://x", "k").unwrap_err().code(),
        "config"
    );
    assert_eq!(
        RemoteEngine::new("not a url", "k").unwrap_err().code(),
        "config"
    );
    assert_eq!(
        RemoteEngine::new("http://h:1", " ").unwrap_err().code(),
        "config"
    );
    let r = RemoteEngine::new("http://u:p@h:1/prefix/", "k").unwrap();
    assert_eq!(r.url(), "http://h:1/prefix/");
    let id = Uuid::nil();
    assert_eq!(
        r.task_url(id, Some("wait")).as_str(),
        format!("http://u:p@h:1/prefix/api/v1/tasks/{id}/wait")
    );
    assert_eq!(
        r.endpoint(&["tasks", "by-key", "a/b c"]).path(),
        "/prefix/api/v1/tasks/by-key/a%2Fb%20c"
    );
}

/// A port nobody listens on.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn refused_connections_are_not_sent_and_retried() {
    let port = closed_port().await;
    let r = RemoteEngine::new(&format!("http://127.0.0.1:{port}"), "k").unwrap();
    let err = r
        .transport
        .client()
        .await
        .get(r.endpoint(&["tasks"]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify_transport(&err), Failure::NotSent);
    // An idempotent call with a short retry window gives up with a database error.
    let started = Instant::now();
    let out: Result<Task> = r
        .call(
            Method::GET,
            r.endpoint(&["tasks"]),
            None,
            REQUEST_TIMEOUT,
            Retry::Until(Instant::now() + Duration::from_millis(300)),
        )
        .await;
    let e = out.unwrap_err();
    assert_eq!(e.code(), "database", "{e}");
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "did not retry"
    );
}

/// A tiny HTTP server answering each connection with the next canned response.
async fn canned(responses: Vec<(u16, String)>) -> (u16, tokio::task::JoinHandle<usize>) {
    let (port, h) = recording(responses).await;
    (port, tokio::spawn(async move { h.await.unwrap().len() }))
}

/// [`canned`], returning the bodies of the requests it served.
async fn recording(responses: Vec<(u16, String)>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let mut served = Vec::new();
        let mut responses = responses.into_iter();
        let mut next = responses.next();
        while let Some((status, body)) = next.clone() {
            let (mut sock, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            let request_body = loop {
                let n = sock.read(&mut buf).await.unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                // The client's HTTP/2 probe (remote/transport.rs): this server speaks only
                // HTTP/1.1, so it hangs up, and the probe settles on HTTP/1.1.
                if text.starts_with("PRI * HTTP/2.0") {
                    break "PRI".to_string();
                }
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if rest.len() >= len || n == 0 {
                        break rest.to_string();
                    }
                } else if n == 0 {
                    break String::new();
                }
            };
            if request_body == "PRI" {
                continue;
            }
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await.ok();
            sock.shutdown().await.ok();
            served.push(request_body);
            next = responses.next();
        }
        served
    });
    (port, h)
}

#[tokio::test]
async fn gateway_errors_are_retried_for_idempotent_calls_only() {
    let unavailable =
        json!({"error": {"code": "database", "message": "database error: down", "details": {}}})
            .to_string();
    let page = json!({"items": [], "next_cursor": null}).to_string();
    let (port, server) = canned(vec![
        (503, unavailable.clone()),
        (502, "<html>proxy</html>".into()),
        (200, page),
    ])
    .await;
    let r = RemoteEngine::new(&format!("http://127.0.0.1:{port}"), "k").unwrap();
    let got = r.list(ListFilter::default()).await.unwrap();
    assert!(got.items.is_empty());
    assert_eq!(server.await.unwrap(), 3);

    // answer is not idempotent: a 503 is returned at once, mapped by its code.
    let (port, server) = canned(vec![(503, unavailable)]).await;
    let r = RemoteEngine::new(&format!("http://127.0.0.1:{port}"), "k").unwrap();
    let e = r
        .answer(
            Uuid::now_v7(),
            Answer {
                response: json!(true),
                by: "a".into(),
                channel: "api".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Database(m) if m == "down"), "{e:?}");
    assert_eq!(server.await.unwrap(), 1);

    // A 4xx is final even for an idempotent call.
    let nf = json!({"error": {"code": "not_found", "message": "task x not found", "details": {"id": "x"}}}).to_string();
    let (port, server) = canned(vec![(404, nf)]).await;
    let r = RemoteEngine::new(&format!("http://127.0.0.1:{port}"), "k").unwrap();
    let e = r.get(Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(&e, Error::NotFound(x) if x == "x"), "{e:?}");
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test]
async fn a_retried_create_without_a_key_sends_one_generated_key() {
    let busy =
        json!({"error": {"code": "database", "message": "database error: busy", "details": {}}})
            .to_string();
    let nf = json!({"error": {"code": "not_found", "message": "task x not found", "details": {"id": "x"}}}).to_string();
    let (port, server) = recording(vec![(503, busy.clone()), (504, busy), (404, nf)]).await;
    let r = RemoteEngine::new(&format!("http://127.0.0.1:{port}"), "k").unwrap();
    let e = r
        .create(NewTask {
            title: "t".into(),
            payload: json!({}),
            response_schema: json!({"type": "boolean"}),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found");
    let bodies = server.await.unwrap();
    assert_eq!(bodies.len(), 3);
    let keys: Vec<Value> = bodies
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["key"].clone())
        .collect();
    assert!(
        keys[0].as_str().is_some_and(|k| Uuid::parse_str(k).is_ok()),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
}
