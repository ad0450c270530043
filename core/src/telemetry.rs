//! OpenTelemetry traces of a task's life: `inloop.create`, `inloop.deliver` (one per channel
//! and attempt), `inloop.verify`, `inloop.answer` and `inloop.resume` (the waiter getting the
//! end; the span covers the wait), each with the task's id, key and namespace as attributes.
//!
//! Off unless the standard variables ask for it: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (and `OTEL_SDK_DISABLED` not `true`, `OTEL_TRACES_EXPORTER`
//! not `none`). Off, nothing is started and each span site costs one atomic load. On, spans go
//! through the SDK's batch processor (its own thread; `OTEL_BSP_*` apply) to the OTLP/HTTP
//! exporter (`http/protobuf`; `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT` apply).
//! `OTEL_SERVICE_NAME` names the service (`inloop` by default). [`shutdown`] flushes.
//!
//! A task carries a W3C `traceparent` ([`crate::NewTask::traceparent`]): the agent's span when
//! it passed one, else the task's own `inloop.create` span. Every later span of the task's
//! life (in any process: the server delivering, a person answering, the agent resuming) is
//! a child of it, so the agent's trace shows the wait.
//!
//! The spans are built with the `opentelemetry` API directly rather than through `tracing`
//! spans: most are known only after the fact (the task, hence the parent, is read inside the
//! operation), so they are started with a recorded start time once the parent is known.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::error::{Error, Result};
use crate::model::Task;

/// Span names.
pub const CREATE: &str = "inloop.create";
pub const DELIVER: &str = "inloop.deliver";
pub const VERIFY: &str = "inloop.verify";
pub const ANSWER: &str = "inloop.answer";
pub const RESUME: &str = "inloop.resume";

/// Attribute keys.
pub const ATTR_ID: &str = "inloop.task.id";
pub const ATTR_KEY: &str = "inloop.task.key";
pub const ATTR_NAMESPACE: &str = "inloop.task.namespace";
pub const ATTR_STATUS: &str = "inloop.task.status";

/// The longest `traceparent` accepted (W3C allows future versions to append fields).
const MAX_TRACEPARENT_BYTES: usize = 512;

static ON: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<Option<State>> = Mutex::new(None);

struct State {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// No endpoint, or disabled: nothing starts.
    Off,
    /// Export over OTLP/HTTP to the endpoint the exporter resolves from the variables.
    Export,
}

/// Reads the standard `OTEL_*` variables through `var` (tests pass their own lookup). A
/// protocol or exporter inloop cannot honour is an error naming the variable, not a silent
/// fallback.
///
/// ```
/// use inloop_core::telemetry::{plan_from, Plan};
/// let env = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4318".to_string());
/// assert_eq!(plan_from(env).unwrap(), Plan::Export);
/// assert_eq!(plan_from(|_| None).unwrap(), Plan::Off);
/// ```
pub fn plan_from(var: impl Fn(&str) -> Option<String>) -> std::result::Result<Plan, String> {
    let get = |k: &str| {
        var(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Plan::Off);
    }
    if get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return Ok(Plan::Off);
    }
    if let Some(e) = get("OTEL_TRACES_EXPORTER") {
        let names: Vec<&str> = e.split(',').map(str::trim).collect();
        if names.iter().all(|n| n.eq_ignore_ascii_case("none")) {
            return Ok(Plan::Off);
        }
        if let Some(other) = names.iter().find(|n| !n.eq_ignore_ascii_case("otlp")) {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={e:?}: inloop exports traces with \"otlp\" only (or \
                 \"none\"), not {other:?}"
            ));
        }
    }
    for k in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = get(k) {
            if p != "http/protobuf" {
                return Err(format!(
                    "{k}={p:?}: inloop exports traces over OTLP/HTTP with protobuf \
                     (\"http/protobuf\") only"
                ));
            }
            break; // the traces-specific variable wins
        }
    }
    Ok(Plan::Export)
}

/// Starts the exporter when the environment asks for it ([`plan_from`] over the process
/// environment); returns whether traces are exported. `default_service` is the
/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
/// A second call while running changes nothing. Call [`shutdown`] before the process exits so
/// that the last spans are sent.
///
/// ```no_run
/// if inloop_core::telemetry::init_from_env("my-agent").expect("OTEL_* variables") {
///     // ... spans of every task this process touches are exported ...
///     inloop_core::telemetry::shutdown();
/// }
/// ```
pub fn init_from_env(default_service: &str) -> std::result::Result<bool, String> {
    if plan_from(|k| std::env::var(k).ok())? == Plan::Off {
        return Ok(false);
    }
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if state.is_some() {
        return Ok(true);
    }
    // The blocking HTTP client is built on a thread of the exporter's own, so this works from
    // inside a tokio runtime too.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("cannot start the OTLP trace exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name(default_service.to_string());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("inloop");
    *state = Some(State { provider, tracer });
    ON.store(true, Ordering::SeqCst);
    Ok(true)
}

/// Whether spans are being exported.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Sends the spans not yet exported and stops the exporter (later spans are dropped). Blocks
/// until the export finishes or times out (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default).
/// Does nothing when tracing is off.
pub fn shutdown() {
    ON.store(false, Ordering::SeqCst);
    let state = STATE.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(s) = state
        && let Err(e) = s.provider.shutdown()
    {
        tracing::warn!(error = %e, "inloop: flushing traces at shutdown failed");
    }
}

/// Checks a W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`) and
/// returns the span context it names. Bad input is [`Error::InvalidArgument`].
///
/// ```
/// let sc = inloop_core::telemetry::parse_traceparent(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(sc.is_sampled());
/// assert!(inloop_core::telemetry::parse_traceparent("00-xyz").is_err());
/// ```
pub fn parse_traceparent(s: &str) -> Result<SpanContext> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!(
            "traceparent {:?} is not a W3C traceparent (version-traceid-spanid-flags, e.g. \
             00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01): {why}",
            s.chars().take(80).collect::<String>()
        ))
    };
    if s.len() > MAX_TRACEPARENT_BYTES {
        return Err(bad("too long"));
    }
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() < 4 {
        return Err(bad("expected four fields separated by '-'"));
    }
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let (version, trace, span, flags) = (parts[0], parts[1], parts[2], parts[3]);
    if !hex(version, 2) || version == "ff" {
        return Err(bad("bad version"));
    }
    if version == "00" && parts.len() != 4 {
        return Err(bad("version 00 has exactly four fields"));
    }
    if !hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
        return Err(bad(
            "the trace id must be 32 lowercase hex digits, not all zero",
        ));
    }
    if !hex(span, 16) || span.bytes().all(|b| b == b'0') {
        return Err(bad(
            "the span id must be 16 lowercase hex digits, not all zero",
        ));
    }
    if !hex(flags, 2) {
        return Err(bad("the flags must be 2 lowercase hex digits"));
    }
    let trace_id = TraceId::from_hex(trace).map_err(|_| bad("bad trace id"))?;
    let span_id = SpanId::from_hex(span).map_err(|_| bad("bad span id"))?;
    let flags = u8::from_str_radix(flags, 16).map_err(|_| bad("bad flags"))?;
    Ok(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// The `traceparent` naming `sc`.
pub fn format_traceparent(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

fn parent_of(traceparent: Option<&str>) -> Context {
    match traceparent.map(parse_traceparent) {
        Some(Ok(sc)) => Context::new().with_remote_span_context(sc),
        _ => Context::new(),
    }
}

fn task_attrs(t: &Task) -> [KeyValue; 4] {
    [
        KeyValue::new(ATTR_ID, t.id.to_string()),
        KeyValue::new(ATTR_KEY, t.key.clone()),
        KeyValue::new(ATTR_NAMESPACE, t.namespace.clone()),
        KeyValue::new(ATTR_STATUS, t.status.as_str()),
    ]
}

/// A span of a task's life whose parent is known only at its end (the task is read inside
/// the operation). Holds nothing but a start time when tracing is on, nothing at all when off.
pub(crate) struct TaskSpan {
    start: Option<(&'static str, SystemTime)>,
}

impl TaskSpan {
    /// Notes the start of `name` (when tracing is on).
    pub(crate) fn start(name: &'static str) -> TaskSpan {
        TaskSpan {
            start: enabled().then(|| (name, SystemTime::now())),
        }
    }

    /// Ends the span as a child of the task's `traceparent`, with its attributes and `extra`.
    pub(crate) fn end(self, task: &Task, extra: Vec<KeyValue>) {
        self.end_with(task, extra, None);
    }

    /// Ends the span of an operation on `task` that failed with `e`.
    pub(crate) fn fail(self, task: &Task, e: &Error) {
        self.end_with(task, Vec::new(), Some((e.code(), e.to_string())));
    }

    /// Ends the span with an error status: `code` (an `inloop.error.code` attribute) and
    /// `message`.
    pub(crate) fn end_error(
        self,
        task: &Task,
        extra: Vec<KeyValue>,
        code: &'static str,
        message: String,
    ) {
        self.end_with(task, extra, Some((code, message)));
    }

    /// Ends the span of an operation that failed before the task was read (no parent).
    pub(crate) fn fail_unread(self, id: &uuid::Uuid, e: &Error) {
        let Some((name, start)) = self.start else {
            return;
        };
        emit(
            name,
            start,
            &Context::new(),
            vec![KeyValue::new(ATTR_ID, id.to_string())],
            Some((e.code(), e.to_string())),
        );
    }

    fn end_with(self, task: &Task, mut extra: Vec<KeyValue>, e: Option<(&'static str, String)>) {
        let Some((name, start)) = self.start else {
            return;
        };
        extra.extend(task_attrs(task));
        emit(
            name,
            start,
            &parent_of(task.traceparent.as_deref()),
            extra,
            e,
        );
    }
}

fn emit(
    name: &'static str,
    start: SystemTime,
    parent: &Context,
    attrs: Vec<KeyValue>,
    e: Option<(&'static str, String)>,
) {
    let state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s) = state.as_ref() else {
        return;
    };
    let mut span = s
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_attributes(attrs)
        .start_with_context(&s.tracer, parent);
    if let Some((code, message)) = e {
        span.set_attribute(KeyValue::new("inloop.error.code", code));
        span.set_status(Status::error(message));
    }
    span.end();
}

/// The `inloop.create` span: started before the insert, because its own context is what a
/// task created without a `traceparent` stores.
pub(crate) struct CreateSpan {
    span: Option<opentelemetry_sdk::trace::Span>,
}

impl CreateSpan {
    /// Starts the span as a child of `given` (the agent's traceparent) when tracing is on.
    pub(crate) fn start(given: Option<&str>) -> CreateSpan {
        if !enabled() {
            return CreateSpan { span: None };
        }
        let state = STATE.lock().unwrap_or_else(|p| p.into_inner());
        let span = state.as_ref().map(|s| {
            s.tracer
                .span_builder(CREATE)
                .with_kind(SpanKind::Internal)
                .start_with_context(&s.tracer, &parent_of(given))
        });
        CreateSpan { span }
    }

    /// This span's own `traceparent` (when it records).
    pub(crate) fn traceparent(&self) -> Option<String> {
        self.span
            .as_ref()
            .map(|s| s.span_context())
            .filter(|sc| sc.is_valid())
            .map(format_traceparent)
    }

    pub(crate) fn end(self, task: &Task, created: bool) {
        if let Some(mut span) = self.span {
            span.set_attributes(task_attrs(task));
            span.set_attribute(KeyValue::new("inloop.task.created", created));
            span.end();
        }
    }

    pub(crate) fn fail(self, e: &Error) {
        if let Some(mut span) = self.span {
            span.set_attribute(KeyValue::new("inloop.error.code", e.code()));
            span.set_status(Status::error(e.to_string()));
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(plan_from(vars(&[])).unwrap(), Plan::Off);
        assert_eq!(
            plan_from(vars(&[("OTEL_SERVICE_NAME", "x")])).unwrap(),
            Plan::Off
        );
        assert_eq!(
            plan_from(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).unwrap(),
            Plan::Off
        );
        assert_eq!(
            plan_from(vars(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:1/v1/traces",
            )]))
            .unwrap(),
            Plan::Export
        );
        assert_eq!(
            plan_from(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ]))
            .unwrap(),
            Plan::Off
        );
        assert_eq!(
            plan_from(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ]))
            .unwrap(),
            Plan::Off
        );
    }

    #[test]
    fn unsupported_protocols_and_exporters_are_errors() {
        let e = plan_from(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .unwrap_err();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("http/protobuf"),
            "{e}"
        );
        // The traces-specific variable wins over the general one.
        assert_eq!(
            plan_from(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]))
            .unwrap(),
            Plan::Export
        );
        let e = plan_from(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ]))
        .unwrap_err();
        assert!(e.contains("zipkin"), "{e}");
    }

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(tp).unwrap();
        assert_eq!(format_traceparent(&sc), tp);
        assert!(sc.is_remote() && sc.is_sampled());
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
        // A future version may append fields.
        parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").unwrap();
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let e = parse_traceparent(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{bad}: {e}");
        }
        assert!(parse_traceparent(&"0".repeat(600)).is_err());
    }

    #[test]
    fn off_spans_cost_nothing_and_emit_nothing() {
        // No exporter was started in this test binary.
        assert!(!enabled());
        assert!(TaskSpan::start(ANSWER).start.is_none());
        let c = CreateSpan::start(None);
        assert!(c.span.is_none() && c.traceparent().is_none());
    }
}
