//! Slack modals for typed answers: a `views.open` view generated from the response schema, and
//! the answer read back from a `view_submission` (validated by the core, errors inline).

use serde_json::{Map, Value, json};

use crate::error::FieldError;

/// The modal's `callback_id`.
pub const CALLBACK: &str = "inloop.answer";
/// Every input's `action_id` (block ids are the property names).
const ACTION: &str = "v";

/// One top-level property and how it is asked.
struct Input<'a> {
    key: &'a str,
    schema: &'a Map<String, Value>,
    required: bool,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Text { multiline: bool },
    Date,
    Number { integer: bool },
    Bool,
    Choice(&'a [Value]),
    Choices(&'a [Value]),
}

/// The inputs for `schema`: an object whose properties are all flat (strings, numbers,
/// booleans, enums, dates, arrays of enum strings). `None` for anything else: the message then
/// offers only the dashboard link.
fn inputs(schema: &Value) -> Option<Vec<Input<'_>>> {
    fn enum_of(m: &Map<String, Value>) -> Option<&[Value]> {
        let e = m.get("enum")?.as_array()?;
        (!e.is_empty() && e.len() <= 100 && e.iter().all(Value::is_string)).then_some(e.as_slice())
    }
    let obj = schema.as_object()?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return None;
    }
    let props = obj.get("properties")?.as_object()?;
    if props.is_empty() || props.len() > 50 {
        return None;
    }
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (key, p) in props {
        let p = p.as_object()?;
        if key.len() > 200 {
            return None;
        }
        let kind = match p.get("type").and_then(Value::as_str)? {
            "string" => match enum_of(p) {
                Some(e) => Kind::Choice(e),
                None if p.get("format").and_then(Value::as_str) == Some("date") => Kind::Date,
                None => Kind::Text {
                    multiline: p
                        .get("maxLength")
                        .and_then(Value::as_u64)
                        .is_none_or(|n| n > 150),
                },
            },
            "integer" => Kind::Number { integer: true },
            "number" => Kind::Number { integer: false },
            "boolean" => Kind::Bool,
            "array" => {
                let items = p.get("items")?.as_object()?;
                let e = enum_of(items)?;
                if e.len() > 10 {
                    return None;
                }
                Kind::Choices(e)
            }
            _ => return None,
        };
        out.push(Input {
            key,
            schema: p,
            required: required.contains(&key.as_str()),
            kind,
        });
    }
    Some(out)
}

/// Whether `schema` can be answered in a modal.
pub fn supported(schema: &Value) -> bool {
    inputs(schema).is_some()
}

fn plain(s: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": s.chars().take(max).collect::<String>()})
}

fn option(i: usize, v: &Value) -> Value {
    json!({"text": plain(v.as_str().unwrap_or_default(), 75), "value": i.to_string()})
}

/// The `views.open` view for `task` (private_metadata: the task id).
pub fn view(task: &crate::model::Task) -> Option<Value> {
    let inputs = inputs(&task.response_schema)?;
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn",
        "text": task.title.chars().take(2900).collect::<String>()}})];
    for i in &inputs {
        let label = i
            .schema
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or(i.key);
        let element = match &i.kind {
            Kind::Text { multiline } => {
                let mut e = json!({"type": "plain_text_input", "action_id": ACTION, "multiline": multiline});
                if let Some(n) = i.schema.get("maxLength").and_then(Value::as_u64) {
                    e["max_length"] = json!(n.min(3000));
                }
                e
            }
            Kind::Date => json!({"type": "datepicker", "action_id": ACTION}),
            Kind::Number { integer } => {
                let mut e = json!({"type": "number_input", "action_id": ACTION, "is_decimal_allowed": !integer});
                for (from, to) in [("minimum", "min_value"), ("maximum", "max_value")] {
                    if let Some(n) = i.schema.get(from).filter(|n| n.is_number()) {
                        e[to] = json!(n.to_string());
                    }
                }
                e
            }
            Kind::Bool => json!({"type": "checkboxes", "action_id": ACTION,
                                 "options": [{"text": plain("Yes", 75), "value": "true"}]}),
            Kind::Choice(e) if e.len() <= 10 => {
                json!({"type": "radio_buttons", "action_id": ACTION,
                "options": e.iter().enumerate().map(|(n, v)| option(n, v)).collect::<Vec<_>>()})
            }
            Kind::Choice(e) => json!({"type": "static_select", "action_id": ACTION,
                "options": e.iter().enumerate().map(|(n, v)| option(n, v)).collect::<Vec<_>>()}),
            Kind::Choices(e) => json!({"type": "checkboxes", "action_id": ACTION,
                "options": e.iter().enumerate().map(|(n, v)| option(n, v)).collect::<Vec<_>>()}),
        };
        let mut block = json!({"type": "input", "block_id": i.key, "label": plain(label, 2000),
                               "element": element,
                               // A boolean left unticked is `false`, never "missing".
                               "optional": !i.required || matches!(i.kind, Kind::Bool)});
        if let Some(d) = i.schema.get("description").and_then(Value::as_str) {
            block["hint"] = plain(d, 2000);
        }
        blocks.push(block);
    }
    Some(json!({
        "type": "modal", "callback_id": CALLBACK, "private_metadata": task.id.to_string(),
        "title": plain("Answer", 24), "submit": plain("Submit", 24), "close": plain("Cancel", 24),
        "blocks": blocks,
    }))
}

/// The answer in a `view_submission`'s `view.state.values`, or the inputs that do not convert
/// (block id -> message).
pub fn answer(schema: &Value, values: &Value) -> Result<Value, Vec<(String, String)>> {
    let Some(inputs) = inputs(schema) else {
        return Err(vec![(
            String::new(),
            "this answer cannot be given in Slack".into(),
        )]);
    };
    let mut out = Map::new();
    let mut errors = Vec::new();
    for i in &inputs {
        let v = &values[i.key][ACTION];
        let pick = |o: &Value, e: &[Value]| -> Option<Value> {
            o["value"]
                .as_str()?
                .parse::<usize>()
                .ok()
                .and_then(|n| e.get(n).cloned())
        };
        let got = match &i.kind {
            Kind::Text { .. } => v["value"].as_str().map(|s| json!(s)),
            Kind::Date => v["selected_date"].as_str().map(|s| json!(s)),
            Kind::Number { integer } => match v["value"].as_str() {
                None => None,
                Some(s) => {
                    let parsed = if *integer {
                        s.trim().parse::<i64>().ok().map(Value::from)
                    } else {
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite())
                            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    };
                    if parsed.is_none() {
                        errors.push((
                            i.key.to_string(),
                            if *integer {
                                "enter a whole number"
                            } else {
                                "enter a number"
                            }
                            .into(),
                        ));
                    }
                    parsed
                }
            },
            Kind::Bool => Some(json!(
                v["selected_options"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
            )),
            Kind::Choice(e) => pick(&v["selected_option"], e),
            Kind::Choices(e) => Some(Value::Array(
                v["selected_options"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|o| pick(o, e)).collect())
                    .unwrap_or_default(),
            )),
        };
        if let Some(g) = got {
            out.insert(i.key.to_string(), g);
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(errors)
    }
}

/// The `response_action: errors` body for field errors (paths like `/amount`); errors that name
/// no input go to the first one.
pub fn errors_response(schema: &Value, errors: &[(String, String)]) -> Value {
    let first = inputs(schema)
        .and_then(|i| i.first().map(|i| i.key.to_string()))
        .unwrap_or_default();
    let mut map = Map::new();
    for (block, msg) in errors {
        let block = if block.is_empty() {
            first.clone()
        } else {
            block.clone()
        };
        let entry = map.entry(block).or_insert_with(|| json!(""));
        let text = match entry.as_str() {
            Some("") | None => msg.clone(),
            Some(prev) => format!("{prev}; {msg}"),
        };
        *entry = json!(text.chars().take(300).collect::<String>());
    }
    json!({"response_action": "errors", "errors": map})
}

/// Field errors from the core (JSON Pointer paths) as `(block id, message)` pairs.
pub fn field_errors(errors: &[FieldError]) -> Vec<(String, String)> {
    errors
        .iter()
        .map(|e| {
            let top = e
                .path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .replace("~1", "/")
                .replace("~0", "~");
            (top, e.message.clone())
        })
        .collect()
}
