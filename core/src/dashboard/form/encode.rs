//! Values as the pairs a browser would post (to pre-fill the form), and the schema's defaults.

use serde_json::{Map, Value};

use super::schema::{child_ptr, name_of};
use super::{Kind, Node};

/// The pairs the rendered form posts when it shows `value` (nothing edited).
pub(super) fn encode(
    node: &Node,
    ptr: &str,
    value: Option<&Value>,
    required: bool,
    out: &mut Pairs,
) {
    let name = name_of(ptr).to_string();
    // A null in a nullable field shows as empty; choices and JSON show it as `null`.
    let keeps_null = matches!(node.kind, Kind::Choice(_) | Kind::Json { .. });
    let value = value.filter(|v| keeps_null || !v.is_null());
    match &node.kind {
        Kind::Object(props) => {
            let map = value.and_then(Value::as_object);
            for p in props {
                let child = map.and_then(|m| m.get(&p.key));
                encode(&p.node, &child_ptr(ptr, &p.key), child, p.required, out);
            }
        }
        Kind::Text { .. } => out.push((name, value.map(text_of).unwrap_or_default())),
        Kind::DateTime => out.push((name, value.map(datetime_input).unwrap_or_default())),
        Kind::Number(_) => out.push((name, value.map(text_of).unwrap_or_default())),
        Kind::Bool if required => {
            if let Some(b) = value.and_then(Value::as_bool) {
                out.push((name, b.to_string()));
            }
        }
        Kind::Bool => {
            out.push((name.clone(), "false".into()));
            if value == Some(&Value::Bool(true)) {
                out.push((name, "true".into()));
            }
        }
        Kind::Choice(opts) => out.push((name, value.map(|v| opts.encode(v)).unwrap_or_default())),
        Kind::Multi(opts) => {
            for v in value.and_then(Value::as_array).into_iter().flatten() {
                out.push((name.clone(), opts.encode(v)));
            }
        }
        Kind::Const(c) => out.push((name, c.to_string())),
        Kind::Json { .. } => out.push((name, value.map(pretty).unwrap_or_default())),
    }
}

pub(super) type Pairs = Vec<(String, String)>;

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// An RFC 3339 time as a `datetime-local` value in UTC; other text is shown as is.
fn datetime_input(v: &Value) -> String {
    let s = text_of(v);
    match chrono::DateTime::parse_from_rfc3339(&s) {
        Ok(t) => {
            let t = t.with_timezone(&chrono::Utc).naive_utc();
            let secs = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            match t.and_utc().timestamp_subsec_nanos() {
                0 => secs,
                n if n % 1_000_000 == 0 => format!("{secs}.{:03}", n / 1_000_000),
                n if n % 1_000 == 0 => format!("{secs}.{:06}", n / 1_000),
                n => format!("{secs}.{n:09}"),
            }
        }
        Err(_) => s,
    }
}

/// The schema's defaults as one answer document.
pub(super) fn defaults(node: &Node) -> Option<Value> {
    if let Some(d) = &node.default {
        return Some(d.clone());
    }
    let Kind::Object(props) = &node.kind else {
        return None;
    };
    let map: Map<String, Value> = props
        .iter()
        .filter_map(|p| Some((p.key.clone(), defaults(&p.node)?)))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}
