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

use serde_json::Value;

mod encode;
mod errors;
mod parse;
mod render;
mod schema;
#[cfg(test)]
mod tests;

pub use parse::parse;
pub use render::fields;
pub use schema::is_approval;
use schema::name_of;

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
