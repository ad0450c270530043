//! A real webhook receiver on loopback: verifies Standard Webhooks signatures with the core's
//! reference check and records every request; it can fail or hold requests on demand.

#![allow(dead_code)] // each suite uses a different part of the receiver

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use inloop_core::channels::webhook;
use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub verified: bool,
    pub body: Value,
    /// The status answered (0 while held).
    pub status: u16,
}

/// How the receiver behaves.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// Answer 500 to the first N requests of each webhook-id.
    pub fail_first: usize,
    /// Answer 500 to everything.
    pub always_fail: bool,
    /// Hold the first request of each id this long before answering.
    pub hold_first: Option<Duration>,
}

pub struct Hook {
    pub secret: String,
    pub url: String,
    behaviour: Mutex<Behaviour>,
    hits: Mutex<Vec<Hit>>,
}

impl Hook {
    /// Starts a receiver with a fresh secret.
    pub async fn start(behaviour: Behaviour) -> Arc<Hook> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hook = Arc::new(Hook {
            secret: webhook::generate_secret(),
            url,
            behaviour: Mutex::new(behaviour),
            hits: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&hook));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        hook
    }

    /// The environment a server needs to deliver `webhook:NAME` here.
    pub fn env(&self, name: &str) -> BTreeMap<String, String> {
        let upper = name.to_ascii_uppercase();
        [
            (format!("INLOOP_WEBHOOK_{upper}_URL"), self.url.clone()),
            (
                format!("INLOOP_WEBHOOK_{upper}_SECRET"),
                self.secret.clone(),
            ),
        ]
        .into_iter()
        .collect()
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// How many requests of each id were answered 2xx: what the receiver processed.
    pub fn accepted(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for h in self.hits() {
            if (200..300).contains(&h.status) {
                *out.entry(h.id).or_default() += 1;
            }
        }
        out
    }
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let id = h("webhook-id");
    let now = chrono::Utc::now().timestamp();
    let verified = webhook::verify(
        &hook.secret,
        &id,
        &h("webhook-timestamp"),
        &body,
        &h("webhook-signature"),
        now,
        300,
    )
    .is_ok();
    let b = hook.behaviour.lock().unwrap().clone();
    let (index, seen) = {
        let mut hits = hook.hits.lock().unwrap();
        let seen = hits.iter().filter(|x| x.id == id).count();
        hits.push(Hit {
            id: id.clone(),
            verified,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            status: 0,
        });
        (hits.len() - 1, seen)
    };
    if let (Some(d), 0) = (b.hold_first, seen) {
        tokio::time::sleep(d).await;
    }
    let status = if !verified {
        StatusCode::UNAUTHORIZED
    } else if b.always_fail || seen < b.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    hook.hits.lock().unwrap()[index].status = status.as_u16();
    status
}
