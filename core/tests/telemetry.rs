//! OpenTelemetry traces, end to end: a real OTLP/HTTP receiver on loopback decodes the
//! `ExportTraceServiceRequest`s that a real `inloop serve` process (and this process, the
//! agent, through the remote client) export, and the spans of one approval are checked: names,
//! the task's id and key, and parents (the agent's span, carried with the task).
//!
//! One test function: it sets the OTEL_* variables of this process (for the agent side) before
//! any other thread exists.

mod common;
#[path = "common/hook.rs"]
mod hook;

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use hook::{Behaviour, Hook};
use inloop_core::{Answer, Engine, EngineOptions, NewTask, RemoteEngine, Status, telemetry};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    start: u64,
    end: u64,
    attrs: HashMap<String, String>,
}

#[derive(Default)]
struct Received {
    requests: usize,
    spans: Vec<Got>,
    problems: Vec<String>,
}

async fn receive(
    State(r): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut r = r.lock().unwrap();
    r.requests += 1;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/x-protobuf")
    {
        r.problems.push(format!(
            "content-type {:?}",
            headers.get(header::CONTENT_TYPE)
        ));
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new()).into_response();
    }
    let req = match ExportTraceServiceRequest::decode(body) {
        Ok(req) => req,
        Err(e) => {
            r.problems.push(format!("undecodable body: {e}"));
            return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
        }
    };
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|res| &res.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                r.spans.push(Got {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                    attrs: s
                        .attributes
                        .into_iter()
                        .map(|kv| {
                            (
                                kv.key,
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    let ok = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], ok).into_response()
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A running `inloop serve`.
struct Serve {
    child: std::process::Child,
    base: String,
}

impl Serve {
    fn start(db: &str, hook: &Hook, otel: bool) -> Serve {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_inloop"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("INLOOP_DATABASE_URL", db)
            .env("INLOOP_CHANNEL_POLL_MS", "50")
            .env("INLOOP_LOG", "warn")
            .envs(hook.env("hook"))
            // The server's spans are its own service's (`inloop` by default).
            .env_remove("OTEL_SERVICE_NAME")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        if !otel {
            cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        }
        let mut child = cmd.spawn().expect("start inloop serve");
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        let first = lines.next().expect("a first line").unwrap();
        let addr = first
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|u| u.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serve { child, base: addr }
    }

    /// Names of this server's threads (Linux: /proc/PID/task/*/comm, 15 characters).
    fn threads(&self) -> Vec<String> {
        let dir = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .map(|s| s.trim().to_string())
            .collect()
    }

    /// SIGTERM, as a service manager stops it; the exit must be clean.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let st = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "inloop serve exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "inloop serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    /// A failed test leaves no server behind.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn approval(key: &str) -> NewTask {
    NewTask {
        title: format!("Approve {key}?"),
        payload: json!({"order": key}),
        response_schema: json!({"type": "object", "properties": {"approved": {"type": "boolean"}},
                                 "required": ["approved"]}),
        key: Some(key.into()),
        notify: vec!["webhook:hook".into()],
        ..Default::default()
    }
}

fn yes() -> Answer {
    Answer {
        response: json!({"approved": true}),
        by: "alice".into(),
        channel: "api".into(),
    }
}

const PROCESS_NAME_OF_BATCH_THREAD: &str = "OpenTelemetry.T"; // comm keeps 15 characters

#[test]
fn one_approval_is_traced_from_the_server_and_the_agent() {
    // The receiver's port is needed in this process's environment before any thread starts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // SAFETY: no other thread exists yet in this test binary's only test.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_SERVICE_NAME", "agent-test");
        // Nothing is sent before shutdown: what arrives proves the flush at exit.
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "600000");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(listener));
}

async fn run(listener: std::net::TcpListener) {
    let received = Arc::new(Mutex::new(Received::default()));
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let hook = Hook::start(Behaviour::default()).await;
    let dir = std::env::temp_dir().join(format!("inloop-otel-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("x.db").display());
    let admin = Engine::open(&db, EngineOptions::default()).await.unwrap();
    let (_, secret) = inloop_core::apikeys::create_api_key(&admin, "agent", "default", true)
        .await
        .unwrap();

    let mut serve = Serve::start(&db, &hook, true);
    assert!(
        serve
            .threads()
            .iter()
            .any(|t| t == PROCESS_NAME_OF_BATCH_THREAD),
        "the exporter runs in the server: {:?}",
        serve.threads()
    );
    // The agent: this process, exporting too.
    assert!(telemetry::init_from_env("agent").unwrap());
    let agent = RemoteEngine::new(&format!("http://{}", serve.base), &secret).unwrap();

    // 1. The agent's span is carried in the body.
    let trace = hex::encode(rand_bytes::<16>());
    let agent_span = hex::encode(rand_bytes::<8>());
    let mut t1 = approval("refund-1");
    t1.traceparent = Some(format!("00-{trace}-{agent_span}-01"));
    let c1 = agent.create(t1).await.unwrap();
    assert_eq!(
        c1.task.traceparent.as_deref(),
        Some(format!("00-{trace}-{agent_span}-01").as_str())
    );
    let waiter = {
        let agent = agent.clone();
        let id = c1.task.id;
        tokio::spawn(async move { agent.await_response(id).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // the wait shows in the trace
    agent.answer(c1.task.id, yes()).await.unwrap();
    let done = waiter.await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);

    // 2. The agent's span in the `traceparent` header (W3C propagation over HTTP).
    let trace2 = hex::encode(rand_bytes::<16>());
    let span2 = hex::encode(rand_bytes::<8>());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/api/v1/tasks", serve.base))
        .bearer_auth(&secret)
        .header("traceparent", format!("00-{trace2}-{span2}-01"))
        .json(&approval("refund-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let c2: inloop_core::Created = r.json().await.unwrap();
    // A malformed one is refused, not dropped.
    let r = http
        .post(format!("http://{}/api/v1/tasks", serve.base))
        .bearer_auth(&secret)
        .header("traceparent", "00-nope")
        .json(&approval("refund-bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body.to_string().contains("traceparent"), "{body}");

    // 3. No trace context: the task's life hangs under its own creation.
    let c3 = agent.create(approval("refund-3")).await.unwrap();
    let tp3 = c3
        .task
        .traceparent
        .clone()
        .expect("the create span's context is stored");
    agent.answer(c3.task.id, yes()).await.unwrap();
    agent.answer(c2.task.id, yes()).await.unwrap();

    // Created and ended deliveries of the three tasks.
    common::eventually("six webhook deliveries", Duration::from_secs(20), || {
        hook.hits().len() >= 6
    })
    .await;
    // Settled too (a delivery's span ends once its row is settled).
    let ids = [c1.task.id, c2.task.id, c3.task.id];
    let start = Instant::now();
    loop {
        let mut settled = true;
        for id in ids {
            let rows = inloop_core::channels::deliveries(&admin, id).await.unwrap();
            settled &= rows.len() == 2 && rows.iter().all(|d| d.state == "done");
        }
        if settled {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "deliveries not settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        received.lock().unwrap().requests,
        0,
        "nothing is exported before the schedule delay or shutdown"
    );
    serve.stop();
    telemetry::shutdown();

    let (spans, problems) = {
        let r = received.lock().unwrap();
        (r.spans.clone(), r.problems.clone())
    };
    assert!(problems.is_empty(), "{problems:?}");
    let of = |id: uuid::Uuid, name: &str, service: &str| -> Vec<Got> {
        spans
            .iter()
            .filter(|s| {
                s.name == name
                    && s.service == service
                    && s.attrs.get("inloop.task.id") == Some(&id.to_string())
            })
            .cloned()
            .collect()
    };
    let one = |id, name, service| -> Got {
        let found = of(id, name, service);
        assert_eq!(found.len(), 1, "{name} of {id} from {service}: {spans:#?}");
        found.into_iter().next().unwrap()
    };

    // Task 1: every span of its life is a child of the agent's span, in the agent's trace.
    let id1 = c1.task.id;
    let create = one(id1, telemetry::CREATE, "inloop");
    let answer = one(id1, telemetry::ANSWER, "inloop");
    let resume = one(id1, telemetry::RESUME, "agent-test");
    let delivers = of(id1, telemetry::DELIVER, "inloop");
    assert_eq!(delivers.len(), 2, "{delivers:#?}");
    for s in [&create, &answer, &resume].into_iter().chain(&delivers) {
        assert_eq!(s.trace_id, trace, "{s:#?}");
        assert_eq!(s.parent, agent_span, "{s:#?}");
        assert_eq!(s.attrs["inloop.task.key"], "refund-1", "{s:#?}");
        assert_eq!(s.attrs["inloop.task.namespace"], "default", "{s:#?}");
        assert!(s.end >= s.start, "{s:#?}");
    }
    assert_eq!(create.attrs["inloop.task.created"], "true");
    assert!(
        answer.attrs["inloop.answer.channel"].starts_with("api:"),
        "{answer:#?}"
    );
    assert_eq!(answer.attrs["inloop.task.status"], "completed");
    let mut events: Vec<&str> = delivers
        .iter()
        .map(|d| d.attrs["inloop.delivery.event"].as_str())
        .collect();
    events.sort();
    assert_eq!(events, ["created", "ended"]);
    for d in &delivers {
        assert_eq!(d.attrs["inloop.delivery.channel"], "webhook");
        assert_eq!(d.attrs["inloop.delivery.outcome"], "done");
    }
    // The resume span covers the wait: from before the answer until after it.
    assert!(
        resume.start <= answer.start && resume.end >= answer.end,
        "{resume:#?} {answer:#?}"
    );
    assert!(resume.end - resume.start >= 300_000_000, "{resume:#?}");

    // Task 2: parented by the header's span.
    let create2 = one(c2.task.id, telemetry::CREATE, "inloop");
    assert_eq!(
        (create2.trace_id.as_str(), create2.parent.as_str()),
        (trace2.as_str(), span2.as_str())
    );
    let answer2 = one(c2.task.id, telemetry::ANSWER, "inloop");
    assert_eq!(answer2.parent, span2);

    // Task 3: the create span is a root; the rest are its children, in its trace.
    let create3 = one(c3.task.id, telemetry::CREATE, "inloop");
    assert!(create3.parent.is_empty(), "{create3:#?}");
    assert_eq!(
        tp3,
        format!("00-{}-{}-01", create3.trace_id, create3.span_id)
    );
    let answer3 = one(c3.task.id, telemetry::ANSWER, "inloop");
    assert_eq!(
        (answer3.trace_id.as_str(), answer3.parent.as_str()),
        (create3.trace_id.as_str(), create3.span_id.as_str())
    );
    for d in of(c3.task.id, telemetry::DELIVER, "inloop") {
        assert_eq!(d.parent, create3.span_id);
    }

    // Without the variable, no exporter starts and nothing is sent.
    let before = received.lock().unwrap().requests;
    let mut serve = Serve::start(&db, &hook, false);
    assert!(
        !serve
            .threads()
            .iter()
            .any(|t| t == PROCESS_NAME_OF_BATCH_THREAD),
        "{:?}",
        serve.threads()
    );
    let quiet = RemoteEngine::new(&format!("http://{}", serve.base), &secret).unwrap();
    let c4 = quiet.create(approval("refund-4")).await.unwrap();
    assert_eq!(c4.task.traceparent, None, "no span, nothing stored");
    quiet.answer(c4.task.id, yes()).await.unwrap();
    common::eventually("eight webhook deliveries", Duration::from_secs(20), || {
        hook.hits().len() >= 8
    })
    .await;
    serve.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received.lock().unwrap().requests,
        before,
        "no export without the variable"
    );
    admin.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for x in b.iter_mut() {
        *x = rand::random();
    }
    b[0] |= 1; // never all zero
    b
}
