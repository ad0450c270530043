//! Input checks shared by every operation: sizes, names, targets, NUL characters.

use serde_json::Value;

use crate::error::{Error, FieldError, Result};
use crate::schema;

pub(crate) fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if s.len() > max {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes, over the limit of {max}",
            s.len()
        )));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Error::InvalidArgument(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_namespace(ns: &str) -> Result<()> {
    check_text("namespace", ns, schema::MAX_NAMESPACE_BYTES)?;
    if !ns
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(Error::InvalidArgument(format!(
            "namespace {ns:?} may only contain ASCII letters, digits and - _ . :"
        )));
    }
    Ok(())
}

pub(super) fn check_actor(by: &str) -> Result<()> {
    if by.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "who answers (`by`) must be given".into(),
        ));
    }
    check_text("by", by, schema::MAX_ACTOR_BYTES)
}

pub(super) fn check_channel(channel: &str) -> Result<()> {
    check_text("channel", channel, 64)
}

pub(super) fn check_targets(what: &str, targets: &[String], need_kind: bool) -> Result<()> {
    if targets.len() > 50 {
        return Err(Error::InvalidArgument(format!(
            "{what} has more than 50 entries"
        )));
    }
    for t in targets {
        check_text(what, t, schema::MAX_ACTOR_BYTES)?;
        if need_kind {
            let ok = t.split_once(':').is_some_and(|(k, rest)| {
                !k.is_empty() && !rest.is_empty() && k.chars().all(|c| c.is_ascii_lowercase())
            });
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "{what} entry {t:?} must look like CHANNEL:TARGET, e.g. \"slack:#ops\""
                )));
            }
            if t.starts_with("callback:") {
                return Err(Error::InvalidArgument(format!(
                    "{what} entry {t:?}: a task's end goes to a URL through callback_url, not notify"
                )));
            }
        }
    }
    Ok(())
}

/// Strings containing U+0000 are refused on both backends (PostgreSQL cannot store them).
pub(super) fn nul_errors(v: &Value) -> Vec<FieldError> {
    fn walk(v: &Value, path: &mut String, out: &mut Vec<FieldError>) {
        match v {
            Value::String(s) if s.contains('\0') => out.push(FieldError {
                path: path.clone(),
                message: "strings must not contain the NUL character (U+0000)".into(),
            }),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    if k.contains('\0') {
                        out.push(FieldError {
                            path: path.clone(),
                            message: "keys must not contain the NUL character (U+0000)".into(),
                        });
                    }
                    walk(item, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut String::new(), &mut out);
    out
}
