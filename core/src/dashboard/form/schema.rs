//! The schema as a tree of controls ([`build`]): what control each subschema becomes, its
//! label, hint, default and bounds; JSON Pointer names.

use serde_json::{Map, Value};

use super::{
    Bounds, Kind, LONG_TEXT, LONG_TEXT_WORDS, MAX_DEPTH, MAX_HOPS, MAX_NODES, Node, Options, Prop,
};

struct Ctx<'a> {
    root: &'a Value,
    nodes: usize,
}

/// The form tree of a schema.
pub(super) fn build(schema: &Value) -> Node {
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
pub(super) fn approval_key(root: &Node) -> Option<&str> {
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
pub(super) fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// RFC 6901: `~` -> `~0`, `/` -> `~1`.
pub(super) fn child_ptr(parent: &str, key: &str) -> String {
    format!("{parent}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// The posted name of a pointer (the root's pointer `""` cannot be a name).
pub(super) fn name_of(ptr: &str) -> &str {
    if ptr.is_empty() { "/" } else { ptr }
}
