//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by hand.
//!
//! Counters and histograms live in this process (one replica); the `inloop_tasks` gauge is read
//! from the database on each scrape, so every replica reports the same task counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::engine::Engine;
use crate::error::Result;

/// Upper bounds (seconds) of the request-duration histogram's buckets (`+Inf` is implied).
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The route template a response was produced by, set by the per-route layer.
#[derive(Clone, Copy)]
pub(super) struct RouteLabel(pub &'static str);

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Http {
    /// `(route, method, status)` → requests.
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// `(route, method)` → durations.
    durations: BTreeMap<(&'static str, String), Histogram>,
}

/// The server's own counters (per process).
#[derive(Default)]
pub struct Metrics {
    answers_accepted: AtomicU64,
    answers_refused: AtomicU64,
    http: Mutex<Http>,
}

impl Metrics {
    /// Counts one answer request: accepted (the task completed) or refused.
    pub(super) fn answer(&self, accepted: bool) {
        let c = if accepted {
            &self.answers_accepted
        } else {
            &self.answers_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn request(&self, route: &'static str, method: String, status: u16, secs: f64) {
        let mut http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        *http
            .requests
            .entry((route, method.clone(), status))
            .or_default() += 1;
        http.durations
            .entry((route, method))
            .or_default()
            .observe(secs);
    }

    /// The exposition: task counts (one query), answers, parked waits and HTTP traffic.
    pub async fn render(&self, engine: &Engine) -> Result<String> {
        let counts = engine.status_counts().await?;
        let in_doubt = engine.effects_in_doubt_count().await?;
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let w = &mut out;
        let _ = writeln!(w, "# HELP inloop_tasks Tasks in the database by status.");
        let _ = writeln!(w, "# TYPE inloop_tasks gauge");
        for (status, n) in counts {
            let _ = writeln!(w, "inloop_tasks{{status=\"{}\"}} {n}", status.as_str());
        }
        let _ = writeln!(
            w,
            "# HELP inloop_effects_in_doubt Exactly-once effects that began and never recorded \
             an outcome (all namespaces): each waits for a person (dashboard: Effects in doubt)."
        );
        let _ = writeln!(w, "# TYPE inloop_effects_in_doubt gauge");
        let _ = writeln!(w, "inloop_effects_in_doubt {in_doubt}");
        let _ = writeln!(
            w,
            "# HELP inloop_answers_total Answers submitted through this server, by outcome."
        );
        let _ = writeln!(w, "# TYPE inloop_answers_total counter");
        let accepted = self.answers_accepted.load(Ordering::Relaxed);
        let refused = self.answers_refused.load(Ordering::Relaxed);
        let _ = writeln!(w, "inloop_answers_total{{outcome=\"accepted\"}} {accepted}");
        let _ = writeln!(w, "inloop_answers_total{{outcome=\"refused\"}} {refused}");
        let _ = writeln!(
            w,
            "# HELP inloop_waits_parked Waits (long polls) parked in this process until a wake."
        );
        let _ = writeln!(w, "# TYPE inloop_waits_parked gauge");
        let _ = writeln!(w, "inloop_waits_parked {}", engine.parked());

        let http = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            w,
            "# HELP inloop_http_requests_total HTTP requests by route template, method and status."
        );
        let _ = writeln!(w, "# TYPE inloop_http_requests_total counter");
        for ((route, method, status), n) in &http.requests {
            let _ = writeln!(
                w,
                "inloop_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        let _ = writeln!(
            w,
            "# HELP inloop_http_request_duration_seconds HTTP request duration by route template \
             and method."
        );
        let _ = writeln!(w, "# TYPE inloop_http_request_duration_seconds histogram");
        for ((route, method), h) in &http.durations {
            let labels = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = DURATION_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    w,
                    "inloop_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                w,
                "inloop_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                w,
                "inloop_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        Ok(out)
    }
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The method as a label: the standard ones by name, anything else `other` (so a client
/// cannot grow the label set).
fn method_label(m: &axum::http::Method) -> String {
    use axum::http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if KNOWN.contains(m) {
        m.as_str().to_string()
    } else {
        "other".to_string()
    }
}

/// The outer middleware: times every request and counts it under the route template the
/// per-route layer recorded in the response ([`UNMATCHED`] when no route matched).
pub(super) async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or(UNMATCHED, |r| r.0);
    metrics.request(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
