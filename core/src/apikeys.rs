//! API keys for the REST server (`inloop serve`).
//!
//! A key is `ilk_` followed by 32 random bytes in URL-safe base64 without padding (43
//! characters). Only its SHA-256 is stored: the key is 256-bit random, so a fast hash is sound
//! and lookup is one indexed equality in SQL. A key belongs to one namespace, may answer tasks
//! only when created with `allow_answer`, and may be revoked.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::{Engine, check_namespace, check_text};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::schema::sha256_hex;

/// The prefix of every key.
pub const PREFIX: &str = "ilk_";
/// Length of a whole key: the prefix and 43 base64 characters.
pub const KEY_LEN: usize = 4 + 43;
/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY_MS: i64 = 60_000;

/// An API key as stored (without its hash; the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    /// Who or what uses the key (for people reading `inloop apikey list`).
    pub name: String,
    /// The only namespace the key can see and create tasks in.
    pub namespace: String,
    /// Whether the key may answer tasks (an agent's key should not: it must not approve its
    /// own requests).
    pub allow_answer: bool,
    #[serde(with = "crate::model::rfc3339")]
    pub created_at: i64,
    #[serde(with = "crate::model::rfc3339_opt")]
    pub last_used_at: Option<i64>,
    #[serde(with = "crate::model::rfc3339_opt")]
    pub revoked_at: Option<i64>,
}

/// Creates a key; returns it and the secret, which is shown once and never stored.
pub async fn create_api_key(
    engine: &Engine,
    name: &str,
    namespace: &str,
    allow_answer: bool,
) -> Result<(ApiKey, String)> {
    check_text("name", name, 200)?;
    if name.trim().is_empty() {
        return Err(Error::InvalidArgument("name must not be empty".into()));
    }
    check_namespace(namespace)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", base64_url(&bytes));
    let key = ApiKey {
        id: Uuid::now_v7(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        allow_answer,
        created_at: now_ms(),
        last_used_at: None,
        revoked_at: None,
    };
    engine
        .store()
        .insert_api_key(&key, &sha256_hex(&secret))
        .await?;
    Ok((key, secret))
}

/// Whether `secret` looks like a key (`ilk_` and 43 URL-safe base64 characters).
pub fn is_well_formed(secret: &str) -> bool {
    secret.len() == KEY_LEN
        && secret.starts_with(PREFIX)
        && secret[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key `secret` names, if it is well formed, known and not revoked; else
/// [`Error::Unauthorized`]. Records the use (at most once a minute per key).
pub async fn authenticate(engine: &Engine, secret: &str) -> Result<ApiKey> {
    if !is_well_formed(secret) {
        return Err(Error::Unauthorized(
            "malformed API key (expected ilk_ and 43 characters)".into(),
        ));
    }
    let Some(key) = engine.store().api_key_by_hash(&sha256_hex(secret)).await? else {
        return Err(Error::Unauthorized("unknown API key".into()));
    };
    if key.revoked_at.is_some() {
        return Err(Error::Unauthorized(format!(
            "API key {} ({}) was revoked",
            key.id, key.name
        )));
    }
    let now = now_ms();
    if key.last_used_at.is_none_or(|t| t <= now - TOUCH_EVERY_MS)
        && let Err(e) = engine
            .store()
            .touch_api_key(&key.id, now, TOUCH_EVERY_MS)
            .await
    {
        tracing::warn!(error = %e, "inloop: cannot record the use of an API key");
    }
    Ok(key)
}

/// Every key, oldest first (revoked ones included).
pub async fn list_api_keys(engine: &Engine) -> Result<Vec<ApiKey>> {
    engine.store().list_api_keys().await
}

/// Revokes the key (a second revoke changes nothing); returns it as it is now.
pub async fn revoke_api_key(engine: &Engine, id: Uuid) -> Result<ApiKey> {
    let store = engine.store();
    if !store.revoke_api_key(&id, now_ms()).await? {
        return Err(Error::Missing(format!("API key {id}")));
    }
    store
        .api_key(&id)
        .await?
        .ok_or_else(|| Error::Missing(format!("API key {id}")))
}

/// URL-safe base64 without padding (RFC 4648 §5).
pub(crate) fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(b"foob"), "Zm9vYg");
        assert_eq!(base64_url(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_url(&[0u8; 32]).len(), 43);
    }

    #[test]
    fn recognises_well_formed_keys() {
        let k = format!("ilk_{}", base64_url(&[7u8; 32]));
        assert!(is_well_formed(&k));
        assert!(!is_well_formed(&k[..KEY_LEN - 1]));
        assert!(!is_well_formed(&format!("xyz_{}", &k[4..])));
        assert!(!is_well_formed(&format!("{}=", &k[..KEY_LEN - 1])));
    }
}
