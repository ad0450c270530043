//! A response schema in a few readable lines (`inloop tasks show`'s "expected answer").

use serde_json::Value;

use super::output::{one_line, write_table};

/// A short, readable description of a response schema: one line per top-level field
/// (`name  type  required|optional  description`), or one line for a non-object schema.
pub(super) fn schema_summary(schema: &Value) -> Vec<String> {
    let props = schema.get("properties").and_then(Value::as_object);
    let Some(props) = props.filter(|p| !p.is_empty()) else {
        return vec![describe(schema, schema, 0)];
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = props
        .iter()
        .map(|(name, sub)| {
            let mut row = vec![
                one_line(name, 32),
                one_line(&describe(schema, sub, 0), 60),
                if required.contains(&name.as_str()) {
                    "required".into()
                } else {
                    "optional".into()
                },
            ];
            if let Some(d) = sub.get("description").and_then(Value::as_str) {
                row.push(one_line(d, 60));
            }
            row
        })
        .collect();
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    if write_table(&mut buf, &["FIELD", "TYPE", "", "DESCRIPTION"], &rows).is_ok() {
        lines.extend(
            String::from_utf8_lossy(&buf)
                .lines()
                .skip(1)
                .map(str::to_string),
        );
    }
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        lines.push("(no other fields)".into());
    }
    lines
}

/// The type of a (sub)schema in a few words: `boolean`, `integer 1..5`, `one of "a", "b"`,
/// `array of string`, `Refund (object)`, `string | null`.
fn describe(root: &Value, s: &Value, depth: usize) -> String {
    if depth > 4 {
        return "…".into();
    }
    match s {
        Value::Bool(true) => return "any JSON value".into(),
        Value::Bool(false) => return "nothing (no answer is valid)".into(),
        Value::Object(o) if o.is_empty() => return "any JSON value".into(),
        Value::Object(_) => {}
        _ => return "any JSON value".into(),
    }
    if let Some(c) = s.get("const") {
        return format!("exactly {}", one_line(&c.to_string(), 40));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        let shown: Vec<String> = values.iter().take(8).map(Value::to_string).collect();
        let more = if values.len() > 8 { ", …" } else { "" };
        return format!("one of {}{more}", shown.join(", "));
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(target) if target.get("properties").is_some() => format!("{name} (object)"),
            Some(target) => describe(root, target, depth + 1),
            None => format!("see {r}"),
        };
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            return alts
                .iter()
                .map(|a| describe(root, a, depth + 1))
                .collect::<Vec<_>>()
                .join(" | ");
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if s.get("properties").is_some() => vec!["object"],
        _ if s.get("items").is_some() => vec!["array"],
        _ => vec![],
    };
    if types.is_empty() {
        return "any JSON value".into();
    }
    types
        .iter()
        .map(|t| {
            let mut d = match *t {
                "array" => match s.get("items") {
                    Some(items) => format!("array of {}", describe(root, items, depth + 1)),
                    None => "array".into(),
                },
                other => other.to_string(),
            };
            if let Some(f) = s.get("format").and_then(Value::as_str) {
                d.push_str(&format!(" ({f})"));
            }
            let bound = |k: &str| s.get(k).filter(|v| v.is_number()).map(Value::to_string);
            let (lo, hi) = match *t {
                "number" | "integer" => (bound("minimum"), bound("maximum")),
                "string" => (bound("minLength"), bound("maxLength")),
                "array" => (bound("minItems"), bound("maxItems")),
                _ => (None, None),
            };
            let unit = match *t {
                "string" => " chars",
                "array" => " items",
                _ => "",
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) => d.push_str(&format!(" {lo}..{hi}{unit}")),
                (Some(lo), None) => d.push_str(&format!(" >= {lo}{unit}")),
                (None, Some(hi)) => d.push_str(&format!(" <= {hi}{unit}")),
                (None, None) => {}
            }
            d
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
