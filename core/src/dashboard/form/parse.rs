//! Reading the posted pairs back into the JSON answer ([`parse`]).

use serde_json::{Map, Value};

use super::schema::{build, child_ptr};
use super::{Kind, Node, Posted, Prop};
use crate::error::FieldError;

/// Builds the answer from posted form pairs, guided by the schema. It converts (text to
/// numbers, option values to their JSON values, JSON textareas to JSON) and does not
/// validate: the core does, and its errors come back through [`FormState::errors`]. Errors
/// here are conversions that failed (`"enter a whole number"` at `/count`).
pub fn parse(schema: &Value, pairs: &[(String, String)]) -> Result<Value, Vec<FieldError>> {
    let root = build(schema);
    let posted = Posted::new(pairs);
    let mut errors = Vec::new();
    let (value, _) = parse_node(&root, "", true, &posted, &mut errors);
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        None if errors.is_empty() => Err(vec![FieldError {
            path: String::new(),
            message: "an answer is required".into(),
        }]),
        _ => Err(errors),
    }
}

/// A subtree's value (`None`: absent) and whether anything in it was filled in.
type Parsed = (Option<Value>, bool);

fn parse_node(
    node: &Node,
    ptr: &str,
    required: bool,
    posted: &Posted,
    errors: &mut Vec<FieldError>,
) -> Parsed {
    let empty = || -> Parsed {
        match (node.nullable, required) {
            (true, true) => (Some(Value::Null), false),
            _ => (None, false),
        }
    };
    match &node.kind {
        Kind::Object(props) => parse_object(node, props, ptr, required, posted, errors),
        Kind::Text { .. } => match posted.last(ptr) {
            None => (None, false),
            Some("") if required && !node.nullable => (Some(Value::String(String::new())), false),
            Some("") => empty(),
            Some(s) if matches!(node.kind, Kind::Text { input: "date", .. }) && !is_date(s) => {
                fail(errors, ptr, "enter a date (YYYY-MM-DD)")
            }
            Some(s) => (Some(Value::String(s.replace("\r\n", "\n"))), true),
        },
        Kind::DateTime => match posted.last(ptr).map(str::trim) {
            None | Some("") => empty(),
            Some(s) => match parse_datetime(s) {
                Some(v) => (Some(Value::String(v)), true),
                None => fail(errors, ptr, "enter a date and time (YYYY-MM-DD HH:MM)"),
            },
        },
        Kind::Number(b) => match posted.last(ptr).map(str::trim) {
            None | Some("") => empty(),
            Some(s) => match parse_number(s, b.integer) {
                Some(v) => (Some(v), true),
                None if b.integer => fail(errors, ptr, "enter a whole number"),
                None => fail(errors, ptr, "enter a number"),
            },
        },
        Kind::Bool if required => match posted.last(ptr) {
            None | Some("") => empty(),
            Some(s) => match parse_bool(s) {
                Some(b) => (Some(Value::Bool(b)), true),
                None => fail(errors, ptr, "choose yes or no"),
            },
        },
        Kind::Bool => {
            let all = posted.all(ptr);
            if all.iter().any(|s| parse_bool(s) == Some(true)) {
                (Some(Value::Bool(true)), true)
            } else if all.is_empty() {
                (None, false)
            } else {
                (Some(Value::Bool(false)), false)
            }
        }
        Kind::Choice(opts) => match posted.last(ptr) {
            None | Some("") => empty(),
            Some(s) => match opts.decode(s) {
                Some(v) => (Some(v), true),
                None => fail(errors, ptr, "choose one of the options"),
            },
        },
        Kind::Multi(opts) => {
            let mut items = Vec::new();
            for s in posted.all(ptr).iter().filter(|s| !s.is_empty()) {
                match opts.decode(s) {
                    Some(v) => items.push(v),
                    None => return fail(errors, ptr, "choose from the options"),
                }
            }
            match (items.is_empty(), required) {
                (true, false) => (None, false),
                (true, true) => (Some(Value::Array(items)), false),
                (false, _) => (Some(Value::Array(items)), true),
            }
        }
        Kind::Const(c) => (Some(c.clone()), false),
        Kind::Json { .. } => match posted.last(ptr).map(str::trim) {
            None | Some("") => empty(),
            Some(s) => match serde_json::from_str::<Value>(s) {
                Ok(v) => (Some(v), true),
                Err(e) => fail(errors, ptr, &format!("not valid JSON: {e}")),
            },
        },
    }
}

/// A conversion error at `ptr` (the field counts as filled in: something was typed).
fn fail(errors: &mut Vec<FieldError>, ptr: &str, message: &str) -> Parsed {
    errors.push(FieldError {
        path: ptr.to_string(),
        message: message.to_string(),
    });
    (None, true)
}

fn parse_object(
    node: &Node,
    props: &[Prop],
    ptr: &str,
    required: bool,
    posted: &Posted,
    errors: &mut Vec<FieldError>,
) -> Parsed {
    let mut map = Map::new();
    let mut touched = false;
    for p in props {
        let (v, t) = parse_node(&p.node, &child_ptr(ptr, &p.key), p.required, posted, errors);
        touched |= t;
        if let Some(v) = v {
            map.insert(p.key.clone(), v);
        }
    }
    let is_root = ptr.is_empty();
    match (touched || is_root, required, node.nullable) {
        (true, _, _) => (Some(Value::Object(map)), touched),
        (false, true, true) => (Some(Value::Null), false),
        (false, true, false) => (Some(Value::Object(map)), false),
        (false, false, _) => (None, false),
    }
}

pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// A number as typed. JSON syntax keeps integers exact; otherwise any finite decimal
/// (`.5`, `+1`). Integers accept integral decimals (`3.0`) within the exact range.
fn parse_number(s: &str, integer: bool) -> Option<Value> {
    let n = match serde_json::from_str::<Value>(s) {
        Ok(Value::Number(n)) => n,
        _ => {
            let f: f64 = s.parse().ok().filter(|f: &f64| f.is_finite())?;
            serde_json::Number::from_f64(f)?
        }
    };
    if !integer || n.is_i64() || n.is_u64() {
        return Some(Value::Number(n));
    }
    let f = n.as_f64()?;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (f.fract() == 0.0 && f.abs() <= EXACT).then(|| Value::from(f as i64))
}

/// A `datetime-local` value (read as UTC) or an RFC 3339 time, as RFC 3339.
fn parse_datetime(s: &str) -> Option<String> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Some(s.to_string());
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())?;
    Some(
        naive
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}
