//! Who may act on an effect, and the input checks of its operations.

use serde_json::Value;

use crate::access::Principal;
use crate::engine::{check_namespace, check_text};
use crate::error::{Error, Result};
use crate::schema;
use crate::users::Role;

/// Begin, finish, abort and reads: trusted callers, admins (reads only) and API keys of the
/// effect's namespace.
pub(super) fn check_agent(ns: &str, who: &Principal, write: bool) -> Result<()> {
    match who {
        Principal::Trusted => Ok(()),
        Principal::ApiKey(k) if k.namespace == ns => Ok(()),
        Principal::ApiKey(k) => Err(Error::Forbidden(format!(
            "this API key is for namespace {:?}, not {ns:?}",
            k.namespace
        ))),
        Principal::User(u) if u.role == Role::Admin && !write => Ok(()),
        Principal::User(u) => Err(Error::Forbidden(format!(
            "effects are for agents and admins ({} is a {})",
            u.name, u.role
        ))),
    }
}

/// Resolving an effect in doubt is a person's decision: trusted callers, admins, and API keys
/// of the namespace that may act for people (`--allow-answer`).
pub(super) fn check_resolver(ns: &str, who: &Principal) -> Result<()> {
    match who {
        Principal::Trusted => Ok(()),
        Principal::User(u) if u.role == Role::Admin => Ok(()),
        Principal::User(u) => Err(Error::Forbidden(format!(
            "only an admin may resolve an effect in doubt ({} is a {})",
            u.name, u.role
        ))),
        Principal::ApiKey(k) if k.namespace != ns => Err(Error::Forbidden(format!(
            "this API key is for namespace {:?}, not {ns:?}",
            k.namespace
        ))),
        Principal::ApiKey(k) if !k.allow_answer => Err(Error::Forbidden(format!(
            "API key {} ({}) may not resolve effects in doubt: that is a person's decision \
             (an admin can create a key with --allow-answer)",
            k.id, k.name
        ))),
        Principal::ApiKey(_) => Ok(()),
    }
}

pub(super) fn check_key(ns: &str, key: &str) -> Result<()> {
    check_namespace(ns)?;
    check_text("key", key, schema::MAX_KEY_BYTES)
}

pub(super) fn check_token(token: &str) -> Result<()> {
    if !(8..=256).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidArgument(
            "an effect token is 8..=256 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

pub(super) fn check_result(result: &Value) -> Result<()> {
    schema::check_size("result", result, schema::MAX_DOCUMENT_BYTES)
}

/// An error message as recorded: control characters (but newlines and tabs) become spaces,
/// and at most 2000 characters are kept. An abort never fails on its message: refusing it
/// would leave the effect in doubt for no reason.
pub(super) fn clean_error(error: Option<&str>) -> String {
    let text = error.map(str::trim).filter(|e| !e.is_empty());
    let text = text.unwrap_or("the function raised an error");
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .take(2000)
        .collect()
}

pub(super) fn check_by(by: &str) -> Result<()> {
    if by.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "who acts (`by`) must be given".into(),
        ));
    }
    check_text("by", by, schema::MAX_ACTOR_BYTES)
}
