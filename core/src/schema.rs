//! JSON Schema validation, canonical JSON, digests, and the documented size limits.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, FieldError, Result};

/// Largest accepted payload or answer: 256 KiB of canonical JSON.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Largest accepted payload or response schema: 64 KiB of canonical JSON.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 1000;
/// Longest idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 128;
/// Longest actor name (`by`), in bytes.
pub const MAX_ACTOR_BYTES: usize = 320;
/// At most this many field errors are reported for one document.
pub const MAX_FIELD_ERRORS: usize = 50;
/// Deepest nesting of arrays and objects in a payload, an answer or a schema (every envelope
/// that carries them, up to the JSON parsers' own limit of 128, still parses).
pub const MAX_DEPTH: usize = 64;
/// The most work one validation may take: the schema's fan-out
/// ([`crate::schema_cost::analyse`]) times the instance's size in [`instance_units`]. Over
/// it, the document is refused before any validation runs.
pub const MAX_VALIDATION_WORK: u64 = 2_000_000;
/// `pattern` matches that backtrack (look-around, back-references) give up after this many
/// steps, and the value is refused: the default engine is linear-time for every other
/// pattern, and this bounds the rest.
pub const REGEX_BACKTRACK_LIMIT: usize = 10_000;
/// The most memory a compiled `pattern` (and its lazy DFA's cache) may take.
const REGEX_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// Canonical JSON: object keys sorted by code point, no insignificant whitespace, numbers as
/// serde_json prints them (shortest round-trip form). Equal documents give equal strings.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Hex SHA-256 of a string.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The task digest: SHA-256 of the canonical JSON of the title, payload and both schemas.
/// What the human approves is exactly what the agent asked; the same key with another digest
/// is a different request.
pub fn task_digest(
    title: &str,
    payload: &Value,
    payload_schema: Option<&Value>,
    response_schema: &Value,
) -> String {
    request_digest(title, payload, payload_schema, response_schema, None, None)
}

/// The digest of a whole request: [`task_digest`] when it has no verification and no policy
/// (so digests stay stable across versions), else the same document with `verification` and
/// `policy` added (the ones present): the verification contract and the approval policy are
/// part of what the agent asked. The approvers approve exactly this.
pub fn request_digest(
    title: &str,
    payload: &Value,
    payload_schema: Option<&Value>,
    response_schema: &Value,
    verification: Option<&Value>,
    policy: Option<&Value>,
) -> String {
    let mut doc = serde_json::json!({
        "title": title,
        "payload": payload,
        "payload_schema": payload_schema,
        "response_schema": response_schema,
    });
    if let Some(v) = verification {
        doc["verification"] = v.clone();
    }
    if let Some(p) = policy {
        doc["policy"] = p.clone();
    }
    sha256_hex(&canonical_json(&doc))
}

/// What a task's digest covers besides its payload, to compute the digest another payload
/// would give (approval bound to the action: `docs/policies.md`). A task's JSON deserializes
/// into it (other fields are ignored).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DigestParts {
    /// The task's id (named in a mismatch error).
    #[serde(default)]
    pub id: Option<String>,
    pub title: String,
    #[serde(default)]
    pub payload_schema: Option<Value>,
    pub response_schema: Value,
    #[serde(default)]
    pub verification: Option<crate::verify::Verification>,
    #[serde(default)]
    pub policy: Option<crate::policy::Policy>,
    /// The approved digest (the task's); needed by [`DigestParts::verify`].
    #[serde(default)]
    pub digest: Option<String>,
}

impl DigestParts {
    /// The parts of `task`.
    pub fn of(task: &crate::model::Task) -> DigestParts {
        DigestParts {
            id: Some(task.id.to_string()),
            title: task.title.clone(),
            payload_schema: task.payload_schema.clone(),
            response_schema: task.response_schema.clone(),
            verification: task.verification.clone(),
            policy: task.policy.clone(),
            digest: Some(task.digest.clone()),
        }
    }

    /// The digest the task would have with `payload` (everything else as it is).
    pub fn digest_with(&self, payload: &Value) -> String {
        let verification = self.verification.as_ref().map(|v| v.to_json());
        let policy = self
            .policy
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| serde_json::to_value(p).unwrap_or(Value::Null));
        request_digest(
            &self.title,
            payload,
            self.payload_schema.as_ref(),
            &self.response_schema,
            verification.as_ref(),
            policy.as_ref(),
        )
    }

    /// `Ok` when `payload` gives the approved digest; [`Error::DigestMismatch`] otherwise
    /// ([`Error::InvalidArgument`] when no digest is known).
    pub fn verify(&self, payload: &Value) -> Result<()> {
        let Some(expected) = self.digest.as_deref() else {
            return Err(Error::InvalidArgument(
                "the task's digest is needed to verify a payload".into(),
            ));
        };
        let actual = self.digest_with(payload);
        if actual == expected {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                task_id: self.id.clone().unwrap_or_default(),
                expected: expected.to_string(),
                actual,
            })
        }
    }
}

/// How deeply `value`'s arrays and objects nest (a scalar is 0).
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

/// The size of an instance for [`MAX_VALIDATION_WORK`]: one per value, plus one per 16 bytes
/// of strings and keys (patterns and formats read them).
pub fn instance_units(value: &Value) -> u64 {
    let mut units = 0u64;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        units += 1;
        match v {
            Value::String(s) => units += s.len() as u64 / 16,
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => {
                for (k, c) in m {
                    units += k.len() as u64 / 16;
                    stack.push(c);
                }
            }
            _ => {}
        }
    }
    units
}

/// Whether any string or key in `value` contains U+0000 (PostgreSQL cannot store it).
fn has_nul(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(a) => stack.extend(a),
            Value::Object(m) => {
                if m.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(m.values());
            }
            _ => {}
        }
    }
    false
}

/// Checks the size of a JSON document against a limit, measured as canonical JSON, and its
/// nesting against [`MAX_DEPTH`].
pub fn check_size(what: &'static str, value: &Value, limit: usize) -> Result<()> {
    let d = depth(value);
    if d > MAX_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "{what} nests arrays and objects {d} levels deep, over the limit of {MAX_DEPTH}"
        )));
    }
    let size = canonical_json(value).len();
    if size > limit {
        return Err(Error::TooLarge { what, size, limit });
    }
    Ok(())
}

/// A compiled JSON Schema.
pub struct Schema {
    validator: jsonschema::Validator,
    /// What one instance location may cost ([`crate::schema_cost::analyse`]).
    fanout: u64,
}

impl Schema {
    /// Compiles a schema. `which` names it in errors (`"payload_schema"`, `"response_schema"`).
    /// Only local `$ref`s are followed: a schema that needs another is refused, and so is
    /// one that validation could not finish in bounded time ([`crate::schema_cost`]).
    pub fn compile(which: &'static str, schema: &Value) -> Result<Schema> {
        check_size(which, schema, MAX_SCHEMA_BYTES)?;
        if !schema.is_object() && !schema.is_boolean() {
            return Err(Error::InvalidSchema {
                which,
                message: "a JSON Schema must be an object or a boolean".into(),
            });
        }
        if has_nul(schema) {
            return Err(Error::InvalidSchema {
                which,
                message: "strings must not contain the NUL character (U+0000)".into(),
            });
        }
        // Before anything compiles a pattern or walks a reference.
        let fanout = crate::schema_cost::analyse(which, schema)?;
        if let Err(e) = jsonschema::meta::validate(schema) {
            return Err(Error::InvalidSchema {
                which,
                message: format!("{} (at {})", e, e.instance_path().as_str()),
            });
        }
        let patterns = jsonschema::PatternOptions::fancy_regex()
            .backtrack_limit(REGEX_BACKTRACK_LIMIT)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT);
        let validator = jsonschema::options()
            .with_pattern_options(patterns)
            .build(schema)
            .map_err(|e| Error::InvalidSchema {
                which,
                message: e.to_string(),
            })?;
        Ok(Schema { validator, fanout })
    }

    /// Every problem of `instance` against this schema (at most [`MAX_FIELD_ERRORS`]). An
    /// instance too deep, or too large for this schema's fan-out ([`MAX_VALIDATION_WORK`]),
    /// is refused as a whole before any validation work.
    pub fn errors(&self, instance: &Value) -> Vec<FieldError> {
        let refused = |message: String| {
            vec![FieldError {
                path: String::new(),
                message,
            }]
        };
        let d = depth(instance);
        if d > MAX_DEPTH {
            return refused(format!(
                "nests arrays and objects {d} levels deep, over the limit of {MAX_DEPTH}"
            ));
        }
        let work = self.fanout.saturating_mul(instance_units(instance));
        if work > MAX_VALIDATION_WORK {
            return refused(format!(
                "too large to validate against this schema: {} values and string chunks                  times the schema's fan-out of {} is over the limit of {MAX_VALIDATION_WORK}",
                instance_units(instance),
                self.fanout
            ));
        }
        self.validator
            .iter_errors(instance)
            .take(MAX_FIELD_ERRORS)
            .map(|e| FieldError {
                path: e.instance_path().as_str().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn canonical_json_escapes_strings() {
        assert_eq!(canonical_json(&json!({"k\"": "a\nb"})), r#"{"k\"":"a\nb"}"#);
    }

    #[test]
    fn digest_depends_on_every_part() {
        let s = json!({"type": "object"});
        let d = task_digest("t", &json!({"a": 1}), None, &s);
        assert_eq!(d, task_digest("t", &json!({"a": 1}), None, &s));
        assert_ne!(d, task_digest("u", &json!({"a": 1}), None, &s));
        assert_ne!(d, task_digest("t", &json!({"a": 2}), None, &s));
        assert_ne!(d, task_digest("t", &json!({"a": 1}), Some(&s), &s));
        assert_ne!(d, task_digest("t", &json!({"a": 1}), None, &json!({})));
    }

    #[test]
    fn digest_parts_recompute_the_digest_of_another_payload() {
        let schema = json!({"type": "object"});
        let parts = DigestParts {
            id: Some("t1".into()),
            title: "Run this tool?".into(),
            payload_schema: None,
            response_schema: schema.clone(),
            verification: None,
            policy: None,
            digest: Some(task_digest(
                "Run this tool?",
                &json!({"args": [1]}),
                None,
                &schema,
            )),
        };
        assert!(parts.verify(&json!({"args": [1]})).is_ok());
        let e = parts.verify(&json!({"args": [2]})).unwrap_err();
        assert_eq!(e.code(), "digest_mismatch");
        assert_eq!(e.details()["task_id"], "t1");
        // key order never matters: digests are over canonical JSON
        assert_eq!(
            parts.digest_with(&json!({"a": 1, "b": 2})),
            parts.digest_with(&json!({"b": 2, "a": 1}))
        );
        let no_digest = DigestParts {
            digest: None,
            ..parts
        };
        assert_eq!(
            no_digest.verify(&json!({})).unwrap_err().code(),
            "invalid_argument"
        );
    }

    #[test]
    fn field_errors_name_the_path() {
        let schema = Schema::compile(
            "response_schema",
            &json!({"type": "object", "properties": {"amount": {"type": "number", "maximum": 10}},
                    "required": ["amount"]}),
        )
        .unwrap();
        let errs = schema.errors(&json!({"amount": 11}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "/amount");
        assert!(errs[0].message.contains("10"), "{}", errs[0].message);
        let errs = schema.errors(&json!({}));
        assert_eq!(errs[0].path, "");
        assert!(errs[0].message.contains("amount"));
    }

    #[test]
    fn bad_schemas_are_refused() {
        assert!(matches!(
            Schema::compile("response_schema", &json!({"type": "nonsense"})),
            Err(Error::InvalidSchema { .. })
        ));
        assert!(matches!(
            Schema::compile("response_schema", &json!(5)),
            Err(Error::InvalidSchema { .. })
        ));
        // A remote reference is never fetched.
        let remote = json!({"$ref": "https://example.com/schema.json"});
        assert!(matches!(
            Schema::compile("response_schema", &remote),
            Err(Error::InvalidSchema { .. })
        ));
    }
}
