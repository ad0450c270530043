//! The answer form: generated from a task's response JSON Schema ([`fields`]) and read back
//! from the posted `application/x-www-form-urlencoded` pairs ([`parse`]).
//!
//! Both directions walk one tree built from the schema ([`build`]), so they always agree on
//! which control a value has and how it is encoded.
//!
//! Naming and encoding (what a browser posts):
//! - Every control's `name` is the JSON Pointer of its value in the answer (`/approved`,
//!   `/address/city`, RFC 6901 escaping: `~` as `~0`, `/` as `~1`). When the whole answer is a
//!   single control (the schema is not an object with `properties`) its name is `/`. Names
//!   not starting with `/` (`csrf`, ...) are ignored.
//! - Text, e-mail, URL and date fields post their text; CR LF becomes LF. An empty optional
//!   field is omitted; an empty required string is `""`; an empty nullable field is `null`
//!   when required and omitted otherwise.
//! - `date-time` uses `<input type=datetime-local>` read as UTC: `2024-05-01T10:00` posts
//!   back as `"2024-05-01T10:00:00Z"`; a value with its own offset is kept as typed.
//! - Numbers and integers post their text; empty means absent. Bad text is a field error.
//! - A required boolean is a Yes/No radio pair posting `true` / `false` (nothing chosen means
//!   absent, so "not answered" is never mistaken for "no"). An optional boolean is a checkbox
//!   preceded by a hidden `false`: it always posts `false`, and `true` too when checked, so
//!   an optional boolean is never absent after a submit.
//! - Choices (`enum`, `oneOf`/`anyOf` of `const`s) post the option's value: the string itself
//!   when every option is a non-empty string, otherwise the option's JSON text (`1`, `true`,
//!   `"a"`, `null`), so the exact JSON value comes back. `""` means nothing chosen.
//!   Arrays of choices are checkboxes repeating the name, posted (and so parsed) in option
//!   order; none checked is `[]` when required and absent when optional.
//! - A `const` is a hidden field; the answer always carries the schema's constant.
//! - Anything else (arrays of objects, free-form objects, maps, tuples, unknown shapes) is a
//!   `<textarea>` of JSON for that subtree, named by the subtree's pointer.
//! - An optional nested object in which nothing was filled in is omitted.
//! - The approval shape (an object whose only required property is a boolean, plus optional
//!   string properties) renders Approve / Reject submit buttons posting `true` / `false` under
//!   the boolean's pointer; check [`is_approval`] and omit the generic submit button then.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::{Map, Value};

use super::view::FormState;
use crate::error::FieldError;

/// Nested objects deeper than this become a JSON textarea (also bounds recursive `$ref`s).
const MAX_DEPTH: usize = 8;
/// `$ref` / `allOf` hops followed for one schema before giving up on it.
const MAX_HOPS: usize = 16;
/// Schema nodes turned into controls in one form; the rest become JSON textareas.
const MAX_NODES: usize = 1500;
/// Choices with at most this many options are radios; more make a `<select>`.
const RADIO_MAX: usize = 4;
/// Strings allowed to be longer than this get a `<textarea>`.
const LONG_TEXT: u64 = 200;
/// Property names (or titles) that suggest free text, so a `<textarea>` (when no `maxLength`).
const LONG_TEXT_WORDS: &[&str] = &[
    "comment",
    "reason",
    "note",
    "description",
    "explanation",
    "feedback",
    "message",
    "details",
    "justification",
    "summary",
    "instructions",
];

// ---------------------------------------------------------------------------------------
// The schema, as a tree of controls.

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    label: String,
    hint: Option<String>,
    default: Option<Value>,
    nullable: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Object(Vec<Prop>),
    /// `input` is the `<input type>`: text, email, url or date.
    Text {
        input: &'static str,
        multiline: bool,
        max_len: Option<u64>,
    },
    DateTime,
    Number(Bounds),
    Bool,
    Choice(Options),
    Multi(Options),
    Const(Value),
    /// A JSON textarea; `expect` says what to type ("an array", "an object", "a JSON value").
    Json {
        expect: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Prop {
    key: String,
    required: bool,
    node: Node,
}

#[derive(Debug, Clone, Default)]
struct Bounds {
    integer: bool,
    min: Option<f64>,
    max: Option<f64>,
    excl_min: Option<f64>,
    excl_max: Option<f64>,
    multiple_of: Option<f64>,
}

#[derive(Debug, Clone)]
struct Options {
    items: Vec<(Value, String)>,
    /// Option values are JSON text (not every option is a non-empty string).
    json: bool,
}

impl Options {
    fn new(items: Vec<(Value, String)>) -> Options {
        let json = !items
            .iter()
            .all(|(v, _)| v.as_str().is_some_and(|s| !s.is_empty()));
        Options { items, json }
    }

    fn encode(&self, v: &Value) -> String {
        match v {
            Value::String(s) if !self.json => s.clone(),
            other => other.to_string(),
        }
    }

    fn decode(&self, s: &str) -> Option<Value> {
        if self.json {
            serde_json::from_str(s).ok()
        } else {
            Some(Value::String(s.to_string()))
        }
    }
}

struct Ctx<'a> {
    root: &'a Value,
    nodes: usize,
}

/// The form tree of a schema.
fn build(schema: &Value) -> Node {
    let mut ctx = Ctx {
        root: schema,
        nodes: 0,
    };
    let mut node = classify(&mut ctx, schema, "", 0);
    if node.label.is_empty() {
        node.label = "Answer".into();
    }
    node
}

/// Whether `schema` renders as an Approve / Reject pair (then [`fields`] includes the submit
/// buttons and the page must not add its own).
pub fn is_approval(schema: &Value) -> bool {
    approval_key(&build(schema)).is_some()
}

/// The boolean property's key when the root is an approval: exactly one required property,
/// a boolean, and any others optional plain strings.
fn approval_key(root: &Node) -> Option<&str> {
    let Kind::Object(props) = &root.kind else {
        return None;
    };
    let mut key = None;
    for p in props {
        match (&p.node.kind, p.required) {
            (Kind::Bool, true) if key.is_none() && !p.node.nullable => key = Some(p.key.as_str()),
            (Kind::Text { .. }, false) => {}
            _ => return None,
        }
    }
    key
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn num_of(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64).filter(|f| f.is_finite())
}

/// The schema's effective keywords: local `$ref`s and `allOf`s inlined, outer keywords
/// winning. `None` when a reference cannot be resolved (or loops).
fn effective(ctx: &Ctx, schema: &Value, hops: usize) -> Option<Map<String, Value>> {
    let Value::Object(m) = schema else {
        return Some(Map::new());
    };
    if hops > MAX_HOPS {
        return None;
    }
    let mut out = Map::new();
    if let Some(r) = str_of(m, "$ref") {
        let target = r.strip_prefix('#').and_then(|p| ctx.root.pointer(p))?;
        out = effective(ctx, target, hops + 1)?;
    }
    if let Some(Value::Array(all)) = m.get("allOf") {
        for part in all {
            let part = effective(ctx, part, hops + 1)?;
            merge(&mut out, part);
        }
    }
    let own: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| *k != "$ref" && *k != "allOf")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    merge(&mut out, own);
    Some(out)
}

/// Later keywords win, except that `properties` and `required` accumulate.
fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k), v) {
            ("properties", Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
            ("required", Some(Value::Array(a)), Value::Array(b)) => {
                for r in b {
                    if !a.contains(&r) {
                        a.push(r);
                    }
                }
            }
            (_, _, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn json_node(expect: &'static str) -> Kind {
    Kind::Json { expect }
}

fn classify(ctx: &mut Ctx, schema: &Value, key: &str, depth: usize) -> Node {
    ctx.nodes += 1;
    let over_budget = ctx.nodes > MAX_NODES;
    let m = if over_budget {
        None
    } else {
        effective(ctx, schema, 0)
    };
    let m = m.unwrap_or_default();
    let label = str_of(&m, "title")
        .map(str::to_string)
        .unwrap_or_else(|| humanize(key));
    let mut node = Node {
        kind: json_node("a JSON value"),
        label,
        hint: str_of(&m, "description").map(str::to_string),
        default: m.get("default").cloned(),
        nullable: false,
    };
    if over_budget {
        return node;
    }
    if let Some(c) = m.get("const") {
        node.kind = Kind::Const(c.clone());
    } else if let Some(Value::Array(values)) = m.get("enum").filter(|e| is_nonempty(e)) {
        node.kind = Kind::Choice(Options::new(
            values.iter().map(|v| (v.clone(), display(v))).collect(),
        ));
    } else if let Some(Value::Array(branches)) = m.get("anyOf").or_else(|| m.get("oneOf")) {
        return classify_union(ctx, node, branches, key, depth);
    } else {
        let (ty, nullable) = type_of(&m);
        node.nullable = nullable;
        node.kind = match ty {
            Some("string") => string_kind(&m, key),
            Some(t @ ("integer" | "number")) => Kind::Number(bounds(&m, t == "integer")),
            Some("boolean") => Kind::Bool,
            Some("null") => Kind::Const(Value::Null),
            Some("object") => object_kind(ctx, &m, depth),
            Some("array") => array_kind(ctx, &m, depth),
            _ => json_node("a JSON value"),
        };
    }
    node
}

fn is_nonempty(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// `anyOf`/`oneOf`: constants become a choice; one real branch plus `null` is that branch,
/// nullable; anything else is JSON.
fn classify_union(ctx: &mut Ctx, outer: Node, branches: &[Value], key: &str, depth: usize) -> Node {
    let mut rest = Vec::new();
    let mut had_null = false;
    for b in branches {
        let m = effective(ctx, b, 0).unwrap_or_default();
        let is_null = str_of(&m, "type") == Some("null") || m.get("const") == Some(&Value::Null);
        if is_null {
            had_null = true;
        } else {
            rest.push((b, m));
        }
    }
    let consts: Option<Vec<(Value, String)>> = rest
        .iter()
        .map(|(_, m)| {
            let c = m.get("const").cloned().or_else(|| match m.get("enum") {
                Some(Value::Array(a)) if a.len() == 1 => Some(a[0].clone()),
                _ => None,
            })?;
            let label = str_of(m, "title")
                .map(str::to_string)
                .unwrap_or_else(|| display(&c));
            Some((c, label))
        })
        .collect();
    let mut node = match consts {
        Some(items) if !items.is_empty() => Node {
            kind: Kind::Choice(Options::new(items)),
            ..outer.clone()
        },
        _ if rest.len() == 1 => {
            let inner = classify(ctx, rest[0].0, key, depth);
            Node {
                kind: inner.kind,
                label: if outer.label == humanize(key) {
                    inner.label
                } else {
                    outer.label.clone()
                },
                hint: outer.hint.clone().or(inner.hint),
                default: outer.default.clone().or(inner.default),
                nullable: inner.nullable,
            }
        }
        _ => Node {
            kind: json_node("a JSON value"),
            ..outer.clone()
        },
    };
    node.nullable |= had_null;
    node
}

/// The one non-null `type`, and whether `null` was allowed too.
fn type_of(m: &Map<String, Value>) -> (Option<&str>, bool) {
    match m.get("type") {
        Some(Value::String(t)) => (Some(t.as_str()), false),
        Some(Value::Array(ts)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            let nullable = names.contains(&"null");
            let real: Vec<&str> = names.into_iter().filter(|t| *t != "null").collect();
            match real.as_slice() {
                [one] => (Some(one), nullable),
                [] if nullable => (Some("null"), false),
                _ => (None, nullable),
            }
        }
        _ if m.contains_key("properties") => (Some("object"), false),
        _ if m.contains_key("items") => (Some("array"), false),
        _ => (None, false),
    }
}

fn string_kind(m: &Map<String, Value>, key: &str) -> Kind {
    let max_len = m.get("maxLength").and_then(Value::as_u64);
    let format = str_of(m, "format").unwrap_or("");
    let input = match format {
        "date" => "date",
        "date-time" => return Kind::DateTime,
        "email" | "idn-email" => "email",
        "uri" | "url" | "iri" => "url",
        _ => "text",
    };
    let wordy = || {
        let title = str_of(m, "title").unwrap_or("").to_lowercase();
        let key = key.to_lowercase();
        LONG_TEXT_WORDS
            .iter()
            .any(|w| key.contains(w) || title.contains(w))
    };
    let multiline = input == "text"
        && (matches!(format, "textarea" | "multiline")
            || max_len.is_some_and(|n| n > LONG_TEXT)
            || (max_len.is_none() && wordy()));
    Kind::Text {
        input,
        multiline,
        max_len,
    }
}

fn bounds(m: &Map<String, Value>, integer: bool) -> Bounds {
    let mut b = Bounds {
        integer,
        min: num_of(m, "minimum"),
        max: num_of(m, "maximum"),
        excl_min: num_of(m, "exclusiveMinimum"),
        excl_max: num_of(m, "exclusiveMaximum"),
        multiple_of: num_of(m, "multipleOf").filter(|f| *f > 0.0),
    };
    // Draft 4 spelled exclusive bounds as booleans qualifying minimum / maximum.
    if m.get("exclusiveMinimum") == Some(&Value::Bool(true)) {
        b.excl_min = b.min.take();
    }
    if m.get("exclusiveMaximum") == Some(&Value::Bool(true)) {
        b.excl_max = b.max.take();
    }
    b
}

fn object_kind(ctx: &mut Ctx, m: &Map<String, Value>, depth: usize) -> Kind {
    let Some(Value::Object(props)) = m.get("properties") else {
        return json_node("a JSON object");
    };
    let open_map = match m.get("additionalProperties") {
        None | Some(Value::Bool(_)) => false,
        Some(Value::Object(a)) => !a.is_empty(),
        Some(_) => true,
    };
    if depth >= MAX_DEPTH || open_map || m.contains_key("patternProperties") {
        return json_node("a JSON object");
    }
    let required: Vec<&str> = match m.get("required") {
        Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<Prop> = props
        .iter()
        .map(|(k, s)| Prop {
            key: k.clone(),
            required: required.contains(&k.as_str()),
            node: classify(ctx, s, k, depth + 1),
        })
        .collect();
    // An explicit order hint wins; otherwise the schema's own key order.
    out.sort_by(|a, b| order_of(props, &a.key).total_cmp(&order_of(props, &b.key)));
    Kind::Object(out)
}

fn order_of(props: &Map<String, Value>, key: &str) -> f64 {
    let s = props.get(key);
    s.and_then(|s| s.get("x-order").or_else(|| s.get("propertyOrder")))
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite())
        .unwrap_or(f64::MAX)
}

fn array_kind(ctx: &mut Ctx, m: &Map<String, Value>, depth: usize) -> Kind {
    if m.contains_key("prefixItems") {
        return json_node("a JSON array");
    }
    let Some(items) = m.get("items").filter(|i| i.is_object()) else {
        return json_node("a JSON array");
    };
    let item = classify(ctx, items, "", depth + 1);
    match item.kind {
        Kind::Choice(opts) => Kind::Multi(opts),
        _ => json_node("a JSON array"),
    }
}

/// `due_date` / `dueDate` -> "Due date".
fn humanize(key: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c == '_' || c == '-' {
            out.push(' ');
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    let out = out.trim().to_string();
    let mut cs = out.chars();
    match cs.next() {
        Some(f) => f.to_uppercase().chain(cs).collect(),
        None => String::new(),
    }
}

/// A JSON value as an option label.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// RFC 6901: `~` -> `~0`, `/` -> `~1`.
fn child_ptr(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// The posted name of a pointer (the root's pointer `""` cannot be a name).
fn name_of(ptr: &str) -> &str {
    if ptr.is_empty() { "/" } else { ptr }
}

// ---------------------------------------------------------------------------------------
// Encoding values as the pairs a browser would post (used to pre-fill the form).

/// The pairs the rendered form posts when it shows `value` (nothing edited).
fn encode(node: &Node, ptr: &str, value: Option<&Value>, required: bool, out: &mut Pairs) {
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

type Pairs = Vec<(String, String)>;

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
fn defaults(node: &Node) -> Option<Value> {
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

// ---------------------------------------------------------------------------------------
// Parsing the posted pairs.

/// What was posted, by name, in order.
struct Posted<'a>(HashMap<&'a str, Vec<&'a str>>);

impl<'a> Posted<'a> {
    fn new(pairs: &'a [(String, String)]) -> Posted<'a> {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for (k, v) in pairs.iter().filter(|(k, _)| k.starts_with('/')) {
            map.entry(k.as_str()).or_default().push(v.as_str());
        }
        Posted(map)
    }

    fn all(&self, ptr: &str) -> &[&'a str] {
        self.0.get(name_of(ptr)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The last value posted under the name (a browser sends one; a crafted post may not).
    fn last(&self, ptr: &str) -> Option<&'a str> {
        self.all(ptr).last().copied()
    }
}

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

fn parse_bool(s: &str) -> Option<bool> {
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

// ---------------------------------------------------------------------------------------
// Rendering.

/// The answer form's inputs for `schema` (the page wraps them in the `<form>` with the CSRF
/// field and, unless [`is_approval`], a submit button). Shows `state.posted`, else
/// `state.values`, else the schema's defaults; field errors inline under their fields, and
/// all errors in a summary (role=alert) that links to the fields.
pub fn fields(schema: &Value, state: &FormState) -> Markup {
    let root = build(schema);
    let approval = approval_key(&root).map(|k| child_ptr("", k));
    let reg = Registry::new(&root, approval.as_deref());
    let pairs: Pairs = match (state.posted, state.values) {
        (Some(p), _) => p.to_vec(),
        (None, Some(v)) => encoded(&root, Some(v)),
        (None, None) => encoded(&root, defaults(&root).as_ref()),
    };
    let posted = Posted::new(&pairs);
    let (inline, summary) = place(state.errors, &reg);
    let r = Render {
        reg: &reg,
        posted: &posted,
        inline: &inline,
    };
    html! {
        @if !summary.is_empty() { (error_summary(&summary)) }
        @if approval.is_some() {
            // The first submit button is the one Enter "clicks": a disabled one makes Enter
            // do nothing, so only a deliberate Approve or Reject submits.
            button.enter-guard type="submit" disabled hidden aria-hidden="true" tabindex="-1" {}
        }
        @match &root.kind {
            Kind::Object(props) => {
                @let approval_prop = props.iter().find(|p| Some(child_ptr("", &p.key)) == approval);
                @if let (Some(p), Some(ptr)) = (approval_prop, &approval) {
                    (r.approval_question(&p.node, ptr))
                }
                @for p in props.iter().filter(|p| Some(child_ptr("", &p.key)) != approval) {
                    (r.node(&p.node, &child_ptr("", &p.key), p.required))
                }
                @if let (Some(p), Some(ptr)) = (approval_prop, &approval) {
                    (r.approval_buttons(&p.node, ptr))
                }
            }
            _ => (r.node(&root, "", true)),
        }
    }
}

fn encoded(root: &Node, v: Option<&Value>) -> Pairs {
    let mut out = Vec::new();
    encode(root, "", v, true, &mut out);
    out
}

/// One control (or fieldset) of the form, as located by error links.
struct Entry {
    id: String,
    /// What a link to the field focuses (the first radio of a group, the Approve button).
    focus: String,
    label: String,
    leaf: bool,
}

/// Every field's pointer, in form order, with deterministic ids (`f1`, `f2` ...).
struct Registry {
    by_ptr: HashMap<String, Entry>,
}

impl Registry {
    fn new(root: &Node, approval: Option<&str>) -> Registry {
        let mut reg = Registry {
            by_ptr: HashMap::new(),
        };
        let mut n = 0;
        match &root.kind {
            Kind::Object(props) => {
                for p in props {
                    reg.add(&p.node, &child_ptr("", &p.key), &mut n, p.required);
                }
            }
            _ => {
                reg.add(root, "", &mut n, true);
            }
        }
        if let Some(e) = approval.and_then(|p| reg.by_ptr.get_mut(p)) {
            e.focus = "answer-approve".into();
        }
        reg
    }

    /// Registers a node and its descendants; returns the node's focus id.
    fn add(&mut self, node: &Node, ptr: &str, n: &mut usize, required: bool) -> String {
        *n += 1;
        let id = format!("f{n}");
        let (focus, leaf) = match &node.kind {
            Kind::Object(props) => {
                let first: Vec<String> = props
                    .iter()
                    .map(|p| self.add(&p.node, &child_ptr(ptr, &p.key), n, p.required))
                    .collect();
                (
                    first.into_iter().next().unwrap_or_else(|| id.clone()),
                    false,
                )
            }
            Kind::Multi(_) => (format!("{id}-0"), true),
            Kind::Choice(o) if o.items.len() <= RADIO_MAX => (format!("{id}-0"), true),
            Kind::Bool if required => (format!("{id}-0"), true),
            _ => (id.clone(), true),
        };
        self.by_ptr.insert(
            ptr.to_string(),
            Entry {
                id,
                focus: focus.clone(),
                label: node.label.clone(),
                leaf,
            },
        );
        focus
    }

    fn get(&self, ptr: &str) -> Option<&Entry> {
        self.by_ptr.get(ptr)
    }
}

/// One line of the error summary: the message, and the field it is about (if any).
struct SummaryItem<'a> {
    message: String,
    field: Option<&'a Entry>,
}

/// Sorts errors: inline under a field when the path is that field (or inside a checkbox
/// group or JSON textarea, or a missing required property of a shown field); every error is
/// also listed in the summary, linked to its field or the nearest enclosing one.
fn place<'a>(
    errors: &[FieldError],
    reg: &'a Registry,
) -> (HashMap<String, Vec<String>>, Vec<SummaryItem<'a>>) {
    let mut inline: HashMap<String, Vec<String>> = HashMap::new();
    let mut summary = Vec::new();
    for e in errors {
        let (target, message) = locate(e, reg);
        match target {
            Some(ptr) => {
                inline.entry(ptr.clone()).or_default().push(message.clone());
                summary.push(SummaryItem {
                    message,
                    field: reg.get(&ptr),
                });
            }
            None => summary.push(SummaryItem {
                message: if e.path.is_empty() {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.path, e.message)
                },
                field: ancestors(&e.path).find_map(|p| reg.get(p)),
            }),
        }
    }
    (inline, summary)
}

/// The field an error belongs under, and the message to show there.
fn locate(e: &FieldError, reg: &Registry) -> (Option<String>, String) {
    if let Some(name) = missing_property(&e.message) {
        let ptr = child_ptr(&e.path, &name);
        if reg.get(&ptr).is_some() {
            return (Some(ptr), "This field is required.".into());
        }
    }
    if reg.get(&e.path).is_some() {
        return (Some(e.path.clone()), e.message.clone());
    }
    let inside_leaf = ancestors(&e.path).find(|p| reg.get(p).is_some_and(|x| x.leaf));
    (inside_leaf.map(str::to_string), e.message.clone())
}

/// The name in the validator's `"name" is a required property`.
fn missing_property(message: &str) -> Option<String> {
    let quoted = message.strip_suffix(" is a required property")?;
    serde_json::from_str::<String>(quoted).ok()
}

/// `/a/b/c` -> `/a/b`, `/a` (proper ancestors, nearest first; not the root).
fn ancestors(ptr: &str) -> impl Iterator<Item = &str> {
    let mut cur = ptr;
    std::iter::from_fn(move || {
        let i = cur.rfind('/')?;
        cur = &cur[..i];
        (!cur.is_empty()).then_some(cur)
    })
}

fn error_summary(items: &[SummaryItem]) -> Markup {
    html! {
        div.error-summary role="alert" tabindex="-1" id="answer-errors" {
            h2 { "The answer was not accepted" }
            ul {
                @for item in items {
                    li {
                        @match item.field {
                            Some(f) => a href=(format!("#{}", f.focus)) {
                                strong { (f.label) } ": " (item.message)
                            },
                            None => (item.message),
                        }
                    }
                }
            }
        }
    }
}

struct Render<'a> {
    reg: &'a Registry,
    posted: &'a Posted<'a>,
    inline: &'a HashMap<String, Vec<String>>,
}

/// The ids a control is described by, space separated.
fn describedby(ids: &[Option<String>]) -> Option<String> {
    let v: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
    (!v.is_empty()).then(|| v.join(" "))
}

impl Render<'_> {
    fn node(&self, node: &Node, ptr: &str, required: bool) -> Markup {
        let Some(entry) = self.reg.get(ptr) else {
            return html! {};
        };
        let f = FieldCtx {
            node,
            ptr,
            name: name_of(ptr),
            id: &entry.id,
            required,
            errors: self.inline.get(ptr).map(Vec::as_slice).unwrap_or(&[]),
        };
        match &node.kind {
            Kind::Object(props) => self.object(&f, props),
            Kind::Text {
                input,
                multiline,
                max_len,
            } => self.text(&f, input, *multiline, *max_len),
            Kind::DateTime => self.datetime(&f),
            Kind::Number(b) => self.number(&f, b),
            Kind::Bool if required => self.yes_no(&f),
            Kind::Bool => self.checkbox(&f),
            Kind::Choice(o) if o.items.len() <= RADIO_MAX => self.radios(&f, o),
            Kind::Choice(o) => self.select(&f, o),
            Kind::Multi(o) => self.checkboxes(&f, o),
            Kind::Const(c) => const_field(&f, c),
            Kind::Json { expect } => self.json(&f, expect),
        }
    }

    fn value(&self, ptr: &str) -> &str {
        self.posted.last(ptr).unwrap_or("")
    }

    fn object(&self, f: &FieldCtx, props: &[Prop]) -> Markup {
        html! {
            fieldset.object id=(f.id) aria-describedby=[f.describedby(None)] {
                legend { (f.node.label) (marker(f.required)) }
                (f.hint())
                @for p in props {
                    (self.node(&p.node, &child_ptr(f.ptr, &p.key), p.required))
                }
                (f.error_list())
            }
        }
    }

    fn text(&self, f: &FieldCtx, input: &str, multiline: bool, max_len: Option<u64>) -> Markup {
        let v = self.value(f.ptr);
        html! {
            div.field {
                (f.label())
                (f.hint())
                @if multiline || v.contains('\n') {
                    // The newline after the tag is eaten by the HTML parser, so a value's own
                    // leading newline survives.
                    textarea id=(f.id) name=(f.name) rows=(rows(v, 4)) maxlength=[max_len]
                        aria-describedby=[f.describedby(None)] aria-invalid=[f.invalid()]
                        aria-required=[f.aria_required()] { "\n" (v) }
                } @else {
                    input id=(f.id) type=(input) name=(f.name) value=(v) maxlength=[max_len]
                        aria-describedby=[f.describedby(None)] aria-invalid=[f.invalid()]
                        aria-required=[f.aria_required()];
                }
                (f.error_list())
            }
        }
    }

    fn datetime(&self, f: &FieldCtx) -> Markup {
        let rule = format!("{}-rule", f.id);
        html! {
            div.field {
                (f.label())
                (f.hint())
                p.hint id=(rule) { "Date and time in UTC." }
                input id=(f.id) type="datetime-local" step="1" name=(f.name) value=(self.value(f.ptr))
                    aria-describedby=[f.describedby(Some(&rule))] aria-invalid=[f.invalid()]
                    aria-required=[f.aria_required()];
                (f.error_list())
            }
        }
    }

    fn number(&self, f: &FieldCtx, b: &Bounds) -> Markup {
        let rule_id = format!("{}-rule", f.id);
        let rule = bounds_text(b);
        let min = b
            .min
            .or_else(|| b.excl_min.filter(|_| b.integer).map(|m| m.floor() + 1.0));
        let max = b
            .max
            .or_else(|| b.excl_max.filter(|_| b.integer).map(|m| m.ceil() - 1.0));
        let step = match (b.multiple_of, b.integer) {
            (Some(s), true) if s.fract() == 0.0 => num(s),
            (_, true) => "1".into(),
            (Some(s), false) => num(s),
            (None, false) => "any".into(),
        };
        html! {
            div.field {
                (f.label())
                (f.hint())
                p.hint id=(rule_id) { (rule) }
                input.num id=(f.id) type="number" name=(f.name) value=(self.value(f.ptr))
                    step=(step) min=[min.map(num)] max=[max.map(num)]
                    inputmode=(if b.integer { "numeric" } else { "decimal" })
                    aria-describedby=[f.describedby(Some(&rule_id))] aria-invalid=[f.invalid()]
                    aria-required=[f.aria_required()];
                (f.error_list())
            }
        }
    }

    fn yes_no(&self, f: &FieldCtx) -> Markup {
        let cur = self.value(f.ptr);
        self.group(
            f,
            "radio",
            &[("true", "Yes"), ("false", "No")],
            |v| cur == v,
            "choices inline",
        )
    }

    fn radios(&self, f: &FieldCtx, o: &Options) -> Markup {
        let cur = self.value(f.ptr);
        let mut items: Vec<(String, String)> = o
            .items
            .iter()
            .map(|(v, l)| (o.encode(v), l.clone()))
            .collect();
        if !f.required {
            items.push((String::new(), "No answer".into()));
        }
        let items: Vec<(&str, &str)> = items
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.group(f, "radio", &items, |v| cur == v, "choices")
    }

    fn checkboxes(&self, f: &FieldCtx, o: &Options) -> Markup {
        let all = self.posted.all(f.ptr);
        let items: Vec<(String, String)> = o
            .items
            .iter()
            .map(|(v, l)| (o.encode(v), l.clone()))
            .collect();
        let items: Vec<(&str, &str)> = items
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.group(f, "checkbox", &items, |v| all.contains(&v), "choices")
    }

    /// A fieldset of radios or checkboxes sharing one name.
    fn group(
        &self,
        f: &FieldCtx,
        ty: &str,
        items: &[(&str, &str)],
        checked: impl Fn(&str) -> bool,
        class: &str,
    ) -> Markup {
        html! {
            fieldset.field.group id=(f.id) role=[(ty == "radio").then_some("radiogroup")]
                aria-describedby=[f.describedby(None)] aria-required=[f.aria_required()] {
                legend { (f.node.label) (marker(f.required)) }
                (f.hint())
                div class=(class) {
                    @for (i, (value, label)) in items.iter().enumerate() {
                        label.choice {
                            input id=(format!("{}-{i}", f.id)) type=(ty) name=(f.name) value=(value)
                                checked[checked(value)] aria-invalid=[f.invalid()];
                            span { (label) }
                        }
                    }
                }
                (f.error_list())
            }
        }
    }

    fn checkbox(&self, f: &FieldCtx) -> Markup {
        let on = self
            .posted
            .all(f.ptr)
            .iter()
            .any(|s| parse_bool(s) == Some(true));
        html! {
            div.field.check {
                // Unchecked boxes post nothing: the hidden `false` makes "unchecked" an answer.
                input type="hidden" name=(f.name) value="false";
                label.choice for=(f.id) {
                    input id=(f.id) type="checkbox" name=(f.name) value="true" checked[on]
                        aria-describedby=[f.describedby(None)] aria-invalid=[f.invalid()];
                    span { (f.node.label) (marker(false)) }
                }
                (f.hint())
                (f.error_list())
            }
        }
    }

    fn select(&self, f: &FieldCtx, o: &Options) -> Markup {
        let cur = self.value(f.ptr);
        html! {
            div.field {
                (f.label())
                (f.hint())
                select id=(f.id) name=(f.name) aria-describedby=[f.describedby(None)]
                    aria-invalid=[f.invalid()] aria-required=[f.aria_required()] {
                    option value="" selected[cur.is_empty()] {
                        @if f.required { "Choose…" } @else { "No answer" }
                    }
                    @for (v, label) in &o.items {
                        @let enc = o.encode(v);
                        option value=(enc) selected[enc == cur] { (label) }
                    }
                }
                (f.error_list())
            }
        }
    }

    fn json(&self, f: &FieldCtx, expect: &str) -> Markup {
        let v = self.value(f.ptr);
        let rule = format!("{}-rule", f.id);
        html! {
            div.field.json {
                (f.label())
                (f.hint())
                p.hint id=(rule) { "Enter " (expect) " as JSON." }
                textarea.code id=(f.id) name=(f.name) rows=(rows(v, 5)) spellcheck="false"
                    aria-describedby=[f.describedby(Some(&rule))] aria-invalid=[f.invalid()]
                    aria-required=[f.aria_required()] { "\n" (v) }
                (f.error_list())
            }
        }
    }

    fn approval_ctx<'b>(&'b self, node: &'b Node, ptr: &'b str) -> Option<FieldCtx<'b>> {
        let entry = self.reg.get(ptr)?;
        Some(FieldCtx {
            node,
            ptr,
            name: name_of(ptr),
            id: &entry.id,
            required: true,
            errors: self.inline.get(ptr).map(Vec::as_slice).unwrap_or(&[]),
        })
    }

    /// The approval's question (the boolean's title and description), above the text fields.
    fn approval_question(&self, node: &Node, ptr: &str) -> Markup {
        let Some(f) = self.approval_ctx(node, ptr) else {
            return html! {};
        };
        html! {
            div.approval id=(f.id) {
                p.question id=(format!("{}-q", f.id)) { (node.label) }
                (f.hint())
                (f.error_list())
            }
        }
    }

    /// Approve / Reject: submit buttons posting the boolean.
    fn approval_buttons(&self, node: &Node, ptr: &str) -> Markup {
        let Some(f) = self.approval_ctx(node, ptr) else {
            return html! {};
        };
        let described = describedby(&[Some(format!("{}-q", f.id)), f.hint_id(), f.err_id()]);
        html! {
            div.actions {
                button.btn.approve id="answer-approve" type="submit" name=(f.name) value="true"
                    aria-describedby=[described.clone()] { "Approve" }
                button.btn.reject id="answer-reject" type="submit" name=(f.name) value="false"
                    aria-describedby=[described] { "Reject" }
            }
        }
    }
}

fn const_field(f: &FieldCtx, c: &Value) -> Markup {
    html! {
        div.field.const id=(f.id) {
            span.label { (f.node.label) }
            output { (display(c)) }
            input type="hidden" name=(f.name) value=(c.to_string());
            (f.hint())
            (f.error_list())
        }
    }
}

/// What every control needs to know about itself.
struct FieldCtx<'a> {
    node: &'a Node,
    ptr: &'a str,
    name: &'a str,
    id: &'a str,
    required: bool,
    errors: &'a [String],
}

impl FieldCtx<'_> {
    fn hint_id(&self) -> Option<String> {
        self.node.hint.as_ref().map(|_| format!("{}-hint", self.id))
    }

    fn err_id(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| format!("{}-err", self.id))
    }

    fn describedby(&self, extra: Option<&str>) -> Option<String> {
        describedby(&[self.hint_id(), extra.map(str::to_string), self.err_id()])
    }

    fn invalid(&self) -> Option<&'static str> {
        (!self.errors.is_empty()).then_some("true")
    }

    fn aria_required(&self) -> Option<&'static str> {
        self.required.then_some("true")
    }

    fn label(&self) -> Markup {
        html! { label for=(self.id) { (self.node.label) (marker(self.required)) } }
    }

    fn hint(&self) -> Markup {
        html! {
            @if let (Some(h), Some(id)) = (&self.node.hint, self.hint_id()) {
                p.hint id=(id) { (h) }
            }
        }
    }

    fn error_list(&self) -> Markup {
        html! {
            @if let Some(id) = self.err_id() {
                p.field-error id=(id) {
                    @for (i, e) in self.errors.iter().enumerate() {
                        @if i > 0 { br; }
                        (e)
                    }
                }
            }
        }
    }
}

fn marker(required: bool) -> Markup {
    html! {
        @if required { " " span.req { "required" } } @else { " " span.opt { "optional" } }
    }
}

fn rows(v: &str, min: usize) -> usize {
    (v.lines().count() + 1).clamp(min, 20)
}

/// A bound as text: `3`, not `3.0`.
fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// "A whole number from 1 to 10, in steps of 5."
fn bounds_text(b: &Bounds) -> String {
    let mut parts = vec![
        if b.integer {
            "A whole number"
        } else {
            "A number"
        }
        .to_string(),
    ];
    match (b.min, b.max) {
        (Some(lo), Some(hi)) => parts.push(format!("from {} to {}", num(lo), num(hi))),
        (Some(lo), None) => parts.push(format!("of at least {}", num(lo))),
        (None, Some(hi)) => parts.push(format!("of at most {}", num(hi))),
        (None, None) => {}
    }
    if let Some(x) = b.excl_min {
        parts.push(format!("more than {}", num(x)));
    }
    if let Some(x) = b.excl_max {
        parts.push(format!("less than {}", num(x)));
    }
    if let Some(s) = b.multiple_of {
        parts.push(format!("in steps of {}", num(s)));
    }
    format!("{}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(schema: &Value) -> String {
        fields(schema, &FormState::default()).into_string()
    }

    fn render_with(schema: &Value, values: Option<&Value>, errors: &[FieldError]) -> String {
        let state = FormState {
            values,
            errors,
            posted: None,
        };
        fields(schema, &state).into_string()
    }

    fn err(path: &str, message: &str) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Pairs {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn obj(props: Value, required: Value) -> Value {
        json!({"type": "object", "properties": props, "required": required})
    }

    // --- A tiny browser: what a form with this markup posts when submitted unedited. ---

    fn unescape(s: &str) -> String {
        s.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    /// The attributes of the tag starting at `s` (just after `<name`), up to `>`.
    fn attrs(s: &str) -> (HashMap<String, String>, usize) {
        let mut out = HashMap::new();
        let b = s.as_bytes();
        let mut i = 0;
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                return (out, i + 1);
            }
            let start = i;
            while i < b.len() && !matches!(b[i], b'=' | b' ' | b'>') {
                i += 1;
            }
            let key = s[start..i].to_string();
            if i < b.len() && b[i] == b'=' {
                let vstart = i + 2; // skip ="
                let vend = vstart + s[vstart..].find('"').unwrap();
                out.insert(key, unescape(&s[vstart..vend]));
                i = vend + 1;
            } else {
                out.insert(key, String::new());
            }
        }
    }

    fn submit(html: &str) -> Pairs {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(lt) = rest.find('<') {
            rest = &rest[lt + 1..];
            let tag: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let (a, end) = attrs(&rest[tag.len()..]);
            let body = &rest[tag.len() + end..];
            let Some(name) = a.get("name").cloned() else {
                continue;
            };
            if a.contains_key("disabled") {
                continue;
            }
            match tag.as_str() {
                "input" => {
                    let ty = a.get("type").map(String::as_str).unwrap_or("text");
                    let value = a.get("value").cloned().unwrap_or_default();
                    let checkable = matches!(ty, "checkbox" | "radio");
                    if !checkable || a.contains_key("checked") {
                        out.push((name, value));
                    }
                }
                "textarea" => {
                    let text = unescape(&body[..body.find("</textarea>").unwrap()]);
                    let text = text.strip_prefix('\n').unwrap_or(&text);
                    out.push((name, text.replace('\n', "\r\n")));
                }
                "select" => {
                    let inner = &body[..body.find("</select>").unwrap()];
                    let mut first = None;
                    let mut chosen = None;
                    for opt in inner.split("<option").skip(1) {
                        let (oa, _) = attrs(opt);
                        let v = oa.get("value").cloned().unwrap_or_default();
                        first.get_or_insert(v.clone());
                        if oa.contains_key("selected") {
                            chosen = Some(v);
                        }
                    }
                    out.push((name, chosen.or(first).unwrap_or_default()));
                }
                _ => {}
            }
        }
        out
    }

    // --- Controls per schema shape. ---

    #[test]
    fn string_is_a_text_input_named_by_pointer() {
        let h = render(&obj(json!({"name": {"type": "string"}}), json!([])));
        assert!(h.contains(r#"type="text" name="/name""#), "{h}");
        assert!(h.contains(r#"<label for="f1">Name"#), "{h}");
    }

    #[test]
    fn long_strings_get_a_textarea() {
        let s = obj(
            json!({
                "a": {"type": "string", "maxLength": 500},
                "b": {"type": "string", "maxLength": 50},
                "rejection_reason": {"type": "string"},
                "c": {"type": "string", "format": "textarea"},
            }),
            json!([]),
        );
        let h = render(&s);
        assert!(
            h.contains(r#"<textarea id="f1" name="/a" rows="4" maxlength="500""#),
            "{h}"
        );
        assert!(
            h.contains(r#"type="text" name="/b" value="" maxlength="50""#),
            "{h}"
        );
        // fields keep the schema's order: a, b, rejection_reason, c
        assert!(h.contains(r#"<textarea id="f4" name="/c""#), "{h}");
        assert!(h.contains(r#"name="/rejection_reason""#) && h.matches("<textarea").count() == 3);
    }

    #[test]
    fn a_value_with_newlines_gets_a_textarea() {
        let s = obj(json!({"a": {"type": "string", "maxLength": 20}}), json!([]));
        let h = render_with(&s, Some(&json!({"a": "x\ny"})), &[]);
        assert!(
            h.contains("<textarea") && h.contains(">\nx\ny</textarea>"),
            "{h}"
        );
    }

    #[test]
    fn string_formats_use_matching_inputs() {
        let s = obj(
            json!({
                "d": {"type": "string", "format": "date"},
                "t": {"type": "string", "format": "date-time"},
                "e": {"type": "string", "format": "email"},
                "u": {"type": "string", "format": "uri"},
            }),
            json!([]),
        );
        let h = render(&s);
        assert!(h.contains(r#"type="date" name="/d""#), "{h}");
        assert!(
            h.contains(r#"type="datetime-local" step="1" name="/t""#),
            "{h}"
        );
        assert!(h.contains(r#"type="email" name="/e""#), "{h}");
        assert!(h.contains(r#"type="url" name="/u""#), "{h}");
    }

    #[test]
    fn integer_bounds_become_min_max_step() {
        let s = obj(
            json!({"n": {"type": "integer", "exclusiveMinimum": 0, "maximum": 100, "multipleOf": 5}}),
            json!(["n"]),
        );
        let h = render(&s);
        assert!(
            h.contains(r#"type="number" name="/n" value="" step="5" min="1" max="100""#),
            "{h}"
        );
        assert!(
            h.contains("A whole number, of at most 100, more than 0, in steps of 5."),
            "{h}"
        );
    }

    #[test]
    fn number_without_multiple_steps_any() {
        let s = obj(json!({"x": {"type": "number", "minimum": 0.5}}), json!([]));
        let h = render(&s);
        assert!(h.contains(r#"step="any" min="0.5""#), "{h}");
        assert!(h.contains(r#"inputmode="decimal""#), "{h}");
    }

    #[test]
    fn required_boolean_is_a_yes_no_pair_with_nothing_chosen() {
        let s = obj(
            json!({"ok": {"type": "boolean"}, "x": {"type": "string"}}),
            json!(["ok", "x"]),
        );
        let h = render(&s);
        assert!(h.contains(r#"type="radio" name="/ok" value="true""#), "{h}");
        assert!(
            h.contains(r#"type="radio" name="/ok" value="false""#),
            "{h}"
        );
        assert!(!h.contains("checked"), "{h}");
    }

    #[test]
    fn optional_boolean_is_a_checkbox_after_a_hidden_false() {
        let s = obj(
            json!({"notify": {"type": "boolean", "default": true}}),
            json!([]),
        );
        let h = render(&s);
        let hidden = h
            .find(r#"type="hidden" name="/notify" value="false""#)
            .unwrap();
        let boxed = h
            .find(r#"type="checkbox" name="/notify" value="true" checked"#)
            .unwrap();
        assert!(hidden < boxed, "{h}");
    }

    #[test]
    fn small_enums_are_radios_and_large_ones_a_select() {
        let s = obj(
            json!({
                "small": {"enum": ["a", "b", "c"]},
                "large": {"enum": ["a", "b", "c", "d", "e"]},
            }),
            json!(["small", "large"]),
        );
        let h = render(&s);
        assert_eq!(h.matches(r#"type="radio" name="/small""#).count(), 3, "{h}");
        assert!(h.contains(r#"<select id="f2" name="/large""#), "{h}");
        assert!(h.contains(r#"<option value="e">e</option>"#), "{h}");
    }

    #[test]
    fn optional_radios_offer_no_answer() {
        let s = obj(json!({"c": {"enum": ["a", "b"]}}), json!([]));
        let h = render(&s);
        assert!(h.contains(r#"name="/c" value="" checked"#), "{h}");
        assert!(h.contains("No answer"), "{h}");
    }

    #[test]
    fn non_string_enums_post_json_text() {
        let s = obj(json!({"n": {"enum": [1, 2.5, "1", null]}}), json!(["n"]));
        let h = render(&s);
        for v in [
            r#"value="1""#,
            r#"value="2.5""#,
            r#"value="&quot;1&quot;""#,
            r#"value="null""#,
        ] {
            assert!(h.contains(v), "{v} in {h}");
        }
        let p = pairs(&[("/n", "\"1\"")]);
        assert_eq!(parse(&s, &p).unwrap(), json!({"n": "1"}));
        assert_eq!(parse(&s, &pairs(&[("/n", "1")])).unwrap(), json!({"n": 1}));
        assert_eq!(
            parse(&s, &pairs(&[("/n", "null")])).unwrap(),
            json!({"n": null})
        );
    }

    #[test]
    fn const_is_shown_and_hidden() {
        let s = obj(json!({"kind": {"const": "refund"}}), json!(["kind"]));
        let h = render(&s);
        assert!(h.contains("<output>refund</output>"), "{h}");
        assert!(
            h.contains(r#"type="hidden" name="/kind" value="&quot;refund&quot;""#),
            "{h}"
        );
        assert_eq!(parse(&s, &[]).unwrap(), json!({"kind": "refund"}));
    }

    #[test]
    fn array_of_enum_is_checkboxes() {
        let s = obj(
            json!({"tags": {"type": "array", "items": {"enum": ["x", "y", "z", "w", "v"]}}}),
            json!([]),
        );
        let h = render_with(&s, Some(&json!({"tags": ["y", "v"]})), &[]);
        assert_eq!(
            h.matches(r#"type="checkbox" name="/tags""#).count(),
            5,
            "{h}"
        );
        assert!(h.contains(r#"name="/tags" value="y" checked"#), "{h}");
        assert!(h.contains(r#"name="/tags" value="x">"#), "{h}");
    }

    #[test]
    fn optional_and_required_are_marked() {
        let s = obj(
            json!({"a": {"type": "string"}, "b": {"type": "string"}}),
            json!(["a"]),
        );
        let h = render(&s);
        assert!(h.contains(r#"A <span class="req">required</span>"#), "{h}");
        assert!(h.contains(r#"B <span class="opt">optional</span>"#), "{h}");
        assert!(
            h.contains(r#"name="/a" value="" aria-required="true""#),
            "{h}"
        );
    }

    #[test]
    fn nested_objects_are_fieldsets() {
        let s = obj(
            json!({"address": obj(json!({"city": {"type": "string", "title": "City"}}), json!(["city"]))}),
            json!(["address"]),
        );
        let h = render(&s);
        assert!(
            h.contains(r#"<fieldset class="object" id="f1"><legend>Address"#),
            "{h}"
        );
        assert!(h.contains(r#"name="/address/city""#), "{h}");
    }

    #[test]
    fn pointer_names_escape_tilde_and_slash() {
        let s = obj(json!({"a/b~c": {"type": "string"}}), json!([]));
        assert!(render(&s).contains(r#"name="/a~1b~0c""#));
        let v = parse(&s, &pairs(&[("/a~1b~0c", "x")])).unwrap();
        assert_eq!(v, json!({"a/b~c": "x"}));
    }

    #[test]
    fn one_of_consts_with_titles_is_a_choice() {
        let s = obj(
            json!({"p": {"oneOf": [
                {"const": "lo", "title": "Low"}, {"const": "mid", "title": "Medium"},
                {"const": "hi", "title": "High"}, {"const": "crit", "title": "Critical"},
                {"const": "x", "title": "Extreme"}]}}),
            json!(["p"]),
        );
        let h = render(&s);
        assert!(h.contains(r#"<option value="mid">Medium</option>"#), "{h}");
    }

    #[test]
    fn defaults_prefill() {
        let s = obj(
            json!({"n": {"type": "integer", "default": 3}, "c": {"enum": ["a", "b"], "default": "b"},
                   "s": {"type": "string", "default": "hello"}}),
            json!(["n", "c", "s"]),
        );
        let h = render(&s);
        assert!(h.contains(r#"name="/n" value="3""#), "{h}");
        assert!(h.contains(r#"name="/c" value="b" checked"#), "{h}");
        assert!(h.contains(r#"name="/s" value="hello""#), "{h}");
    }

    #[test]
    fn title_labels_and_description_hints_are_linked() {
        let s = obj(
            json!({"amt": {"type": "string", "title": "Amount", "description": "In euros"}}),
            json!([]),
        );
        let h = render(&s);
        assert!(h.contains(r#"<label for="f1">Amount"#), "{h}");
        assert!(
            h.contains(r#"<p class="hint" id="f1-hint">In euros</p>"#),
            "{h}"
        );
        assert!(h.contains(r#"aria-describedby="f1-hint""#), "{h}");
    }

    #[test]
    fn local_refs_resolve() {
        let s = json!({
            "type": "object",
            "properties": {"c": {"$ref": "#/$defs/Color"}, "d": {"$ref": "#/definitions/D", "title": "Dee"}},
            "$defs": {"Color": {"enum": ["red", "green"], "title": "Colour"}},
            "definitions": {"D": {"type": "integer"}}
        });
        let h = render(&s);
        assert!(h.contains(r#"type="radio" name="/c" value="red""#), "{h}");
        assert!(h.contains("Colour"), "{h}");
        assert!(
            h.contains(r#"<label for="f2">Dee"#) && h.contains(r#"type="number" name="/d""#),
            "{h}"
        );
    }

    #[test]
    fn pydantic_optional_is_a_nullable_field() {
        let s = obj(
            json!({"note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Note"}}),
            json!([]),
        );
        let h = render(&s);
        assert!(h.contains(r#"<textarea id="f1" name="/note""#), "{h}");
        assert_eq!(parse(&s, &pairs(&[("/note", "")])).unwrap(), json!({}));
        assert_eq!(
            parse(&s, &pairs(&[("/note", "x")])).unwrap(),
            json!({"note": "x"})
        );
    }

    #[test]
    fn unsupported_shapes_fall_back_to_json_for_that_subtree() {
        let s = obj(
            json!({
                "rows": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "free": {"type": "object"},
                "tuple": {"type": "array", "prefixItems": [{"type": "string"}]},
                "map": {"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}},
                "plain": {"type": "string"},
            }),
            json!([]),
        );
        let h = render(&s);
        for n in ["/rows", "/free", "/tuple", "/map"] {
            assert!(h.contains(r#"class="code" id="#), "{h}");
            assert!(
                h.contains(&format!(r#"name="{n}" rows="5" spellcheck="false""#)),
                "{n}: {h}"
            );
        }
        assert_eq!(h.matches(r#"<textarea class="code""#).count(), 4, "{h}");
        assert!(h.contains(r#"type="text" name="/plain""#), "{h}");
        assert!(h.contains("Enter a JSON array as JSON."), "{h}");
    }

    #[test]
    fn approval_schema_renders_approve_and_reject() {
        let s = obj(
            json!({"approved": {"type": "boolean", "title": "Refund 500 EUR?"}, "comment": {"type": "string"}}),
            json!(["approved"]),
        );
        assert!(is_approval(&s));
        let h = render(&s);
        let guard = h
            .find(r#"<button class="enter-guard" type="submit" disabled"#)
            .unwrap();
        let approve = h
            .find(r#"type="submit" name="/approved" value="true""#)
            .unwrap();
        let question = h.find("Refund 500 EUR?").unwrap();
        let comment = h.find(r#"name="/comment""#).unwrap();
        assert!(
            guard < question && question < comment && comment < approve,
            "{h}"
        );
        assert!(h.contains(r#"name="/approved" value="false""#), "{h}");
        assert!(!h.contains(r#"type="radio""#), "{h}");
        assert!(
            h.contains(r#"name="/comment""#) && h.contains("Refund 500 EUR?"),
            "{h}"
        );
        let v = parse(
            &s,
            &pairs(&[("csrf", "t"), ("/comment", ""), ("/approved", "false")]),
        );
        assert_eq!(v.unwrap(), json!({"approved": false}));
    }

    #[test]
    fn not_approval_when_other_fields_are_required_or_not_text() {
        let two = obj(
            json!({"a": {"type": "boolean"}, "b": {"type": "boolean"}}),
            json!(["a", "b"]),
        );
        let optional_bool = obj(json!({"a": {"type": "boolean"}}), json!([]));
        let with_number = obj(
            json!({"a": {"type": "boolean"}, "n": {"type": "number"}}),
            json!(["a"]),
        );
        for s in [two, optional_bool, with_number, json!({"type": "boolean"})] {
            assert!(!is_approval(&s), "{s}");
        }
    }

    // --- Errors. ---

    #[test]
    fn a_field_error_is_inline_and_in_the_summary() {
        let s = obj(json!({"amount": {"type": "integer"}}), json!([]));
        let h = render_with(&s, None, &[err("/amount", "must be at least 1")]);
        assert!(
            h.contains(r#"aria-describedby="f1-rule f1-err" aria-invalid="true""#),
            "{h}"
        );
        assert!(
            h.contains(r#"<p class="field-error" id="f1-err">must be at least 1</p>"#),
            "{h}"
        );
        assert!(
            h.contains(r#"role="alert""#) && h.contains(r##"href="#f1""##),
            "{h}"
        );
    }

    #[test]
    fn a_missing_required_property_goes_under_its_field() {
        let s = obj(
            json!({"ok": {"type": "boolean"}, "x": {"type": "string"}}),
            json!(["ok", "x"]),
        );
        // The validator's own words, so a change in them shows here.
        let errors = crate::schema::Schema::compile("response_schema", &s)
            .unwrap()
            .errors(&json!({"x": "a"}));
        assert_eq!(errors[0].path, "");
        let h = render_with(&s, None, &errors);
        assert!(
            h.contains(r#"<p class="field-error" id="f1-err">This field is required.</p>"#),
            "{h}"
        );
        assert!(
            h.contains(r##"<a href="#f1-0"><strong>Ok</strong>: This field is required.</a>"##),
            "{h}"
        );
    }

    #[test]
    fn document_level_errors_are_only_in_the_summary() {
        let s = obj(json!({"a": {"type": "string"}}), json!([]));
        let h = render_with(&s, None, &[err("", "must not have additional properties")]);
        assert!(
            h.contains(r#"<div class="error-summary" role="alert""#),
            "{h}"
        );
        assert!(
            h.contains("<li>must not have additional properties</li>"),
            "{h}"
        );
        assert!(
            !h.contains("field-error") && !h.contains("aria-invalid"),
            "{h}"
        );
    }

    #[test]
    fn an_error_inside_a_json_subtree_goes_under_its_textarea() {
        let s = obj(
            json!({"rows": {"type": "array", "items": {"type": "object"}}}),
            json!([]),
        );
        let h = render_with(&s, None, &[err("/rows/2/a", "is not a string")]);
        assert!(
            h.contains(r#"<p class="field-error" id="f1-err">is not a string</p>"#),
            "{h}"
        );
    }

    #[test]
    fn an_error_under_an_unknown_path_links_to_the_nearest_field() {
        let s = obj(
            json!({"addr": obj(json!({"city": {"type": "string"}}), json!([]))}),
            json!([]),
        );
        let h = render_with(&s, None, &[err("/addr/zip", "unexpected")]);
        assert!(
            h.contains(
                r##"<li><a href="#f2"><strong>Addr</strong>: /addr/zip: unexpected</a></li>"##
            ),
            "{h}"
        );
        assert!(!h.contains("field-error"), "{h}");
    }

    #[test]
    fn no_errors_no_summary() {
        let s = obj(json!({"a": {"type": "string"}}), json!([]));
        assert!(!render(&s).contains("error-summary"));
    }

    // --- Values. ---

    #[test]
    fn values_prefill_instead_of_defaults() {
        let s = obj(
            json!({"a": {"type": "string", "default": "d"}, "b": {"type": "string", "default": "e"}}),
            json!([]),
        );
        let h = render_with(&s, Some(&json!({"a": "typed"})), &[]);
        assert!(h.contains(r#"name="/a" value="typed""#), "{h}");
        assert!(h.contains(r#"name="/b" value="""#), "{h}");
    }

    #[test]
    fn posted_pairs_show_exactly_what_was_typed() {
        let s = obj(
            json!({"n": {"type": "integer"}, "j": {"type": "object"}}),
            json!([]),
        );
        let posted = pairs(&[("/n", "12x"), ("/j", "{oops")]);
        let state = FormState {
            values: Some(&json!({"n": 1})),
            errors: &[],
            posted: Some(&posted),
        };
        let h = fields(&s, &state).into_string();
        assert!(
            h.contains(r#"value="12x""#) && h.contains(">\n{oops</textarea>"),
            "{h}"
        );
    }

    // --- Parsing. ---

    #[test]
    fn parse_converts_numbers_and_reports_bad_text() {
        let s = obj(
            json!({"i": {"type": "integer"}, "x": {"type": "number"}}),
            json!([]),
        );
        let v = parse(&s, &pairs(&[("/i", " 42 "), ("/x", ".5")])).unwrap();
        assert_eq!(v, json!({"i": 42, "x": 0.5}));
        assert_eq!(
            parse(&s, &pairs(&[("/i", "3.0")])).unwrap(),
            json!({"i": 3})
        );
        let e = parse(&s, &pairs(&[("/i", "3.5"), ("/x", "abc")])).unwrap_err();
        assert_eq!(
            e,
            vec![
                err("/i", "enter a whole number"),
                err("/x", "enter a number")
            ]
        );
        for bad in ["NaN", "inf", "1e999", "1,5", "--1"] {
            assert!(parse(&s, &pairs(&[("/x", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_keeps_big_integers_exact() {
        let s = obj(json!({"i": {"type": "integer"}}), json!([]));
        let v = parse(&s, &pairs(&[("/i", "18446744073709551615")])).unwrap();
        assert_eq!(v, json!({"i": 18446744073709551615u64}));
    }

    #[test]
    fn parse_ignores_names_not_starting_with_a_slash_and_unknown_names() {
        let s = obj(json!({"a": {"type": "string"}}), json!([]));
        let v = parse(
            &s,
            &pairs(&[("csrf", "t"), ("a", "no"), ("/zzz", "no"), ("/a", "yes")]),
        );
        assert_eq!(v.unwrap(), json!({"a": "yes"}));
    }

    #[test]
    fn parse_omits_empty_optional_fields_and_keeps_empty_required_strings() {
        let s = obj(
            json!({"r": {"type": "string"}, "o": {"type": "string"}, "n": {"type": "number"},
                   "c": {"enum": ["a", "b", "c", "d", "e"]}}),
            json!(["r"]),
        );
        let p = pairs(&[("/r", ""), ("/o", ""), ("/n", ""), ("/c", "")]);
        assert_eq!(parse(&s, &p).unwrap(), json!({"r": ""}));
    }

    #[test]
    fn parse_booleans() {
        let s = obj(
            json!({"r": {"type": "boolean"}, "o": {"type": "boolean"}}),
            json!(["r"]),
        );
        let p = pairs(&[("/r", "false"), ("/o", "false"), ("/o", "true")]);
        assert_eq!(parse(&s, &p).unwrap(), json!({"r": false, "o": true}));
        let p = pairs(&[("/o", "false")]);
        assert_eq!(parse(&s, &p).unwrap(), json!({"o": false}));
        let e = parse(&s, &pairs(&[("/r", "maybe")])).unwrap_err();
        assert_eq!(e, vec![err("/r", "choose yes or no")]);
    }

    #[test]
    fn parse_json_fallback_reports_syntax_errors() {
        let s = obj(
            json!({"j": {"type": "array", "items": {"type": "object"}}}),
            json!([]),
        );
        let v = parse(&s, &pairs(&[("/j", "[{\"a\": 1}]")])).unwrap();
        assert_eq!(v, json!({"j": [{"a": 1}]}));
        let e = parse(&s, &pairs(&[("/j", "[{")])).unwrap_err();
        assert_eq!(e[0].path, "/j");
        assert!(e[0].message.starts_with("not valid JSON"), "{e:?}");
    }

    #[test]
    fn parse_datetime_local_as_utc() {
        let s = obj(
            json!({"t": {"type": "string", "format": "date-time"}}),
            json!([]),
        );
        let v = parse(&s, &pairs(&[("/t", "2024-05-01T10:30")])).unwrap();
        assert_eq!(v, json!({"t": "2024-05-01T10:30:00Z"}));
        let v = parse(&s, &pairs(&[("/t", "2024-05-01T10:30:00+02:00")])).unwrap();
        assert_eq!(v, json!({"t": "2024-05-01T10:30:00+02:00"}));
        assert_eq!(
            parse(&s, &pairs(&[("/t", "soon")])).unwrap_err()[0].path,
            "/t"
        );
    }

    #[test]
    fn parse_date_checks_the_shape() {
        let s = obj(
            json!({"d": {"type": "string", "format": "date"}}),
            json!([]),
        );
        assert_eq!(
            parse(&s, &pairs(&[("/d", "2024-02-29")])).unwrap(),
            json!({"d": "2024-02-29"})
        );
        assert!(parse(&s, &pairs(&[("/d", "2023-02-29")])).is_err());
    }

    #[test]
    fn parse_omits_an_untouched_optional_object() {
        let inner = obj(
            json!({"city": {"type": "string"}, "zip": {"type": "string"}}),
            json!(["city"]),
        );
        let s = obj(json!({"addr": inner}), json!([]));
        let p = pairs(&[("/addr/city", ""), ("/addr/zip", "")]);
        assert_eq!(parse(&s, &p).unwrap(), json!({}));
        let p = pairs(&[("/addr/city", ""), ("/addr/zip", "1000")]);
        assert_eq!(
            parse(&s, &p).unwrap(),
            json!({"addr": {"city": "", "zip": "1000"}})
        );
    }

    #[test]
    fn parse_textarea_line_endings() {
        let s = obj(
            json!({"c": {"type": "string", "maxLength": 1000}}),
            json!([]),
        );
        let v = parse(&s, &pairs(&[("/c", "a\r\nb")])).unwrap();
        assert_eq!(v, json!({"c": "a\nb"}));
    }

    #[test]
    fn a_root_that_is_not_an_object_posts_as_slash() {
        let s = json!({"type": "integer"});
        assert!(render(&s).contains(r#"name="/""#));
        assert_eq!(parse(&s, &pairs(&[("/", "7")])).unwrap(), json!(7));
        assert_eq!(parse(&s, &[]).unwrap_err()[0].path, "");
    }

    // --- Round trips: what the form posts for `v` parses back to `v`. ---

    fn round_trip_cases() -> Vec<(Value, Vec<Value>)> {
        let everything = json!({
            "type": "object",
            "required": ["name", "ok", "level", "n", "when", "kind", "addr", "tags"],
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "essay": {"type": "string", "maxLength": 5000},
                "ok": {"type": "boolean"},
                "notify": {"type": "boolean"},
                "level": {"enum": ["low", "mid", "high"]},
                "size": {"enum": ["xs", "s", "m", "l", "xl", "xxl"]},
                "n": {"type": "integer", "minimum": 0},
                "x": {"type": "number"},
                "mixed": {"enum": [1, "1", true, null, {"a": 1}]},
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "kind": {"const": "refund"},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
                "nums": {"type": "array", "items": {"enum": [1, 2, 3]}},
                "addr": {"$ref": "#/$defs/Addr"},
                "rows": {"type": "array", "items": {"type": "object"}},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "$defs": {"Addr": {"type": "object", "required": ["city"], "properties": {
                "city": {"type": "string"}, "zip": {"type": "string"}}}}
        });
        let full = json!({
            "name": "Ada <b>", "essay": "line 1\n\nline 3\n", "ok": false, "notify": true,
            "level": "mid", "size": "xl", "n": 0, "x": -2.5, "mixed": {"a": 1},
            "when": "2024-05-01T10:30:00.250Z", "day": "2024-02-29", "kind": "refund",
            "tags": ["a", "c"], "nums": [2], "addr": {"city": "Paris", "zip": "75001"},
            "rows": [{"a": [1, {"b": null}]}], "note": "n"
        });
        let minimal = json!({
            "name": "", "ok": true, "level": "low", "n": 7, "when": "1999-12-31T23:59:59Z",
            "kind": "refund", "addr": {"city": ""}, "tags": [], "notify": false
        });
        let mixed_values: Vec<Value> = [json!(1), json!("1"), json!(true), json!(null)]
            .into_iter()
            .map(|m| {
                let mut v = minimal.clone();
                v["mixed"] = m;
                v
            })
            .collect();
        let approval = obj(
            json!({"approved": {"type": "boolean"}, "reason": {"type": "string"}}),
            json!(["approved"]),
        );
        let scalar = json!({"type": "number"});
        let free = json!(true);
        let mut cases = vec![
            (everything.clone(), vec![full, minimal]),
            (
                approval,
                vec![
                    json!({"approved": true}),
                    json!({"approved": false, "reason": "no"}),
                ],
            ),
            (scalar, vec![json!(1.5), json!(-3)]),
            (
                free,
                vec![json!({"any": ["thing"]}), json!("s"), json!(null)],
            ),
        ];
        cases.push((everything, mixed_values));
        cases
    }

    #[test]
    fn parse_inverts_encode() {
        for (schema, values) in round_trip_cases() {
            let root = build(&schema);
            for v in values {
                let posted = encoded(&root, Some(&v));
                assert_eq!(
                    parse(&schema, &posted).as_ref(),
                    Ok(&v),
                    "{schema} {posted:?}"
                );
            }
        }
    }

    #[test]
    fn the_rendered_form_posts_back_its_values() {
        for (schema, values) in round_trip_cases() {
            let approval = approval_key(&build(&schema)).map(|k| child_ptr("", k));
            for v in values {
                let h = render_with(&schema, Some(&v), &[]);
                let mut posted = submit(&h);
                if let Some(ptr) = &approval {
                    // The reviewer clicks the button matching the value.
                    posted.push((ptr.clone(), v[&ptr[1..]].to_string()));
                }
                assert_eq!(parse(&schema, &posted).as_ref(), Ok(&v), "{h}\n{posted:?}");
            }
        }
    }

    // --- Odd input never panics. ---

    fn deep(n: usize) -> Value {
        let mut s = json!({"type": "string"});
        for _ in 0..n {
            s = json!({"type": "object", "properties": {"a": s}, "required": ["a"]});
        }
        s
    }

    fn odd_schemas() -> Vec<Value> {
        let huge: Vec<Value> = (0..20_000).map(|i| json!(format!("opt{i}"))).collect();
        let wide_refs = json!({
            "$ref": "#/$defs/l0",
            "$defs": (0..12).map(|i| (format!("l{i}"), json!({"type": "object", "properties":
                (0..12).map(|j| (format!("p{j}"), json!({"$ref": format!("#/$defs/l{}", i + 1)})))
                .collect::<Map<String, Value>>()}))).collect::<Map<String, Value>>()
        });
        vec![
            json!(true),
            json!(false),
            json!({}),
            json!(null),
            json!(42),
            json!("string"),
            json!([1, 2]),
            json!({"$ref": "#"}),
            json!({"$ref": "#/nope"}),
            json!({"$ref": 5}),
            json!({"$ref": "http://example.com/x"}),
            json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                   "$ref": "#/$defs/n"}),
            json!({"allOf": [{"$ref": "#"}]}),
            json!({"type": "object", "properties": 5, "required": "x"}),
            json!({"type": "object", "properties": {"a": 5, "b": null, "c": []}, "required": [1, null]}),
            json!({"type": 7, "enum": [], "anyOf": 3}),
            json!({"type": ["string", "integer", "null"]}),
            json!({"type": ["null"]}),
            json!({"type": "integer", "minimum": "a", "maximum": 1e308, "multipleOf": -1}),
            json!({"type": "number", "exclusiveMinimum": true, "exclusiveMaximum": true}),
            json!({"type": "array", "items": [{"type": "string"}]}),
            json!({"anyOf": []}),
            json!({"oneOf": [{"type": "null"}]}),
            json!({"enum": huge}),
            json!({"type": "array", "items": {"enum": huge}}),
            deep(40),
            wide_refs,
        ]
    }

    fn odd_values() -> Vec<Value> {
        vec![
            json!(null),
            json!(1),
            json!("x"),
            json!([1, [2, [3]]]),
            json!({"a": {"a": {"a": 1}}, "next": "x", "p0": [], "": 1}),
        ]
    }

    #[test]
    fn odd_schemas_and_values_never_panic() {
        for s in odd_schemas() {
            let _ = render(&s);
            let _ = is_approval(&s);
            for v in odd_values() {
                let errs = [
                    err("", "x"),
                    err("/a", "y"),
                    err("/a/b/c", "z"),
                    err("~", "w"),
                ];
                let _ = render_with(&s, Some(&v), &errs);
                let posted = encoded(&build(&s), Some(&v));
                let _ = parse(&s, &posted);
            }
            let junk = pairs(&[("/", "{"), ("/a", "x"), ("/a/a", ""), ("/opt1", "opt1")]);
            let _ = parse(&s, &junk);
        }
    }

    #[test]
    fn recursion_and_width_are_bounded() {
        let recursive = json!({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                               "$ref": "#/$defs/n"});
        let h = render(&recursive);
        assert!(h.matches("<fieldset").count() <= MAX_DEPTH, "{h}");
        assert!(h.contains("as JSON"), "the innermost level falls back: {h}");
        let wide = odd_schemas().pop().unwrap();
        let h = render(&wide);
        assert!(h.matches(" name=\"/").count() <= MAX_NODES + 1);
    }

    // --- Escaping. ---

    #[test]
    fn schema_text_is_escaped() {
        let x = r#"<script>alert(1)</script>"><img src=x onerror=alert(1)>"#;
        let s = obj(
            json!({x: {"title": x, "description": x, "enum": [x, "b", "c", "d", "e"], "default": x},
                   "r": {"enum": [x]}, "k": {"const": x}}),
            json!([]),
        );
        let h = render_with(&s, None, &[err(x, x)]);
        assert!(!h.contains("<script") && !h.contains("<img"), "{h}");
        assert!(
            h.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img"),
            "{h}"
        );
    }
}
