//! People who answer tasks in the dashboard: users with a role, argon2id password hashes,
//! sessions (only a token's SHA-256 is stored) and the first-run setup.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Identity;
use crate::engine::{Engine, check_text};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::schema::sha256_hex;

/// What a user may do. Admins see and answer every task, cancel tasks and release others'
/// claims; reviewers see and answer the tasks assigned to them (by name, e-mail or
/// `role:reviewer`), and unassigned tasks when the namespace allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reviewer => "reviewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "reviewer" => Ok(Role::Reviewer),
            other => Err(Error::InvalidArgument(format!(
                "unknown role {other:?} (expected admin or reviewer)"
            ))),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as stored (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    /// Login name, lower case; what the audit trail records as the actor.
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    /// Groups (lower case): tasks assigned to `role:GROUP` or `group:GROUP` are theirs too.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(with = "crate::model::rfc3339")]
    pub created_at: i64,
    #[serde(with = "crate::model::rfc3339_opt")]
    pub disabled_at: Option<i64>,
}

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Passwords longer than this are refused (hashing cost is bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A session ends this long after sign-in, whatever happens.
pub const SESSION_MAX_MS: i64 = 7 * 24 * 3600 * 1000;
/// A session ends after this long without a request.
pub const SESSION_IDLE_MS: i64 = 12 * 3600 * 1000;
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY_MS: i64 = 60_000;

impl User {
    /// The identity the access rules match against `assign_to`.
    pub fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            email: self.email.clone(),
            role: self.role,
            groups: self.groups.clone(),
        }
    }
}

/// A new user's details, checked and normalised (lower case name and e-mail).
fn new_user(name: &str, email: Option<&str>, role: Role) -> Result<User> {
    let name = name.trim().to_ascii_lowercase();
    check_text("name", &name, 64)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(Error::InvalidArgument(format!(
            "user name {name:?} may only contain letters, digits and . _ -"
        )));
    }
    if name.starts_with("role") || name.starts_with("apikey") {
        return Err(Error::InvalidArgument(format!(
            "user name {name:?} is reserved (names starting with role or apikey)"
        )));
    }
    let email = match email.map(str::trim).filter(|e| !e.is_empty()) {
        None => None,
        Some(e) => {
            let e = e.to_ascii_lowercase();
            check_text("email", &e, 254)?;
            let ok = e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !e.contains(char::is_whitespace)
            });
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "{e:?} is not an e-mail address"
                )));
            }
            Some(e)
        }
    };
    let now = now_ms();
    Ok(User {
        id: Uuid::now_v7(),
        name,
        email,
        role,
        groups: Vec::new(),
        created_at: now,
        disabled_at: None,
    })
}

/// Checks and normalises group names (lower case letters, digits, `.`, `_`, `-`; not
/// `admin` or `reviewer`, which are roles), dropping duplicates.
fn check_groups(groups: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        let g = g.trim().to_ascii_lowercase();
        check_text("group", &g, 64)?;
        if !g
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Error::InvalidArgument(format!(
                "group name {g:?} may only contain letters, digits and . _ -"
            )));
        }
        if g == "admin" || g == "reviewer" {
            return Err(Error::InvalidArgument(format!(
                "{g:?} is a role, not a group (use --role)"
            )));
        }
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

/// Sets the user's groups (replacing the previous ones; empty clears them).
pub async fn set_groups(engine: &Engine, name: &str, groups: &[String]) -> Result<User> {
    let groups = check_groups(groups)?;
    let name = name.to_ascii_lowercase();
    if !engine
        .store()
        .set_user_groups(&name, &groups, now_ms())
        .await?
    {
        return Err(Error::Missing(format!("user {name:?}")));
    }
    user(engine, &name).await
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::InvalidArgument(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidArgument(format!(
            "a password may have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// argon2id (the crate's defaults: OWASP's m=19 MiB, t=2, p=1), on a blocking thread.
async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| Error::Internal(format!("cannot encode a salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))?
}

/// Checks `password` against a stored hash, on a blocking thread.
async fn verify_password(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, checked when the login name is unknown so that a miss takes
/// as long as a wrong password (no user enumeration by timing).
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn dummy_hash() -> String {
    if let Some(h) = DUMMY_HASH.get() {
        return h.clone();
    }
    let h = hash_password(&random_token()).await.unwrap_or_default();
    DUMMY_HASH.get_or_init(|| h).clone()
}

/// Creates a user.
///
/// ```no_run
/// # async fn demo(engine: &inloop_core::Engine) -> inloop_core::Result<()> {
/// use inloop_core::users::{add_user, Role};
/// let alice = add_user(engine, "alice", Some("alice@acme.com"), Role::Reviewer, "correct horse battery").await?;
/// assert_eq!(alice.name, "alice");
/// # Ok(()) }
/// ```
pub async fn add_user(
    engine: &Engine,
    name: &str,
    email: Option<&str>,
    role: Role,
    password: &str,
) -> Result<User> {
    add_user_in(engine, name, email, role, &[], password).await
}

/// [`add_user`] with groups (`finance`: tasks assigned to `role:finance` are theirs).
pub async fn add_user_in(
    engine: &Engine,
    name: &str,
    email: Option<&str>,
    role: Role,
    groups: &[String],
    password: &str,
) -> Result<User> {
    let mut user = new_user(name, email, role)?;
    user.groups = check_groups(groups)?;
    check_password(password)?;
    let hash = hash_password(password).await?;
    engine.store().insert_user(&user, &hash).await?;
    Ok(user)
}

/// Whether the first-run setup is open (no user exists and setup never ran).
pub async fn setup_open(engine: &Engine) -> Result<bool> {
    engine.store().setup_open().await
}

/// Creates the first admin: once, and only while no user exists (several callers may race;
/// the first wins, the others get `forbidden`). The dashboard's setup link goes through
/// [`complete_setup_with_token`] instead.
pub async fn complete_setup(
    engine: &Engine,
    name: &str,
    email: Option<&str>,
    password: &str,
) -> Result<User> {
    setup_with(engine, None, name, email, password).await
}

/// [`complete_setup`] through the setup link: `token` must be the outstanding setup token
/// (whichever replica minted it), and is consumed in the same transaction, so a link works
/// once across all replicas. `forbidden` when setup is done or the token is not the one.
///
/// ```no_run
/// # async fn f(engine: &inloop_core::Engine, token: &str) -> inloop_core::Result<()> {
/// let admin = inloop_core::users::complete_setup_with_token(
///     engine, token, "root", None, "correct horse battery").await?;
/// assert_eq!(admin.role, inloop_core::users::Role::Admin);
/// # Ok(()) }
/// ```
pub async fn complete_setup_with_token(
    engine: &Engine,
    token: &str,
    name: &str,
    email: Option<&str>,
    password: &str,
) -> Result<User> {
    setup_with(engine, Some(token), name, email, password).await
}

async fn setup_with(
    engine: &Engine,
    token: Option<&str>,
    name: &str,
    email: Option<&str>,
    password: &str,
) -> Result<User> {
    let user = new_user(name, email, Role::Admin)?;
    check_password(password)?;
    let hash = hash_password(password).await?;
    let token_hash = token.map(sha256_hex);
    if engine
        .store()
        .complete_setup(&user, &hash, token_hash.as_deref())
        .await?
    {
        Ok(user)
    } else if token.is_some() && engine.store().setup_open().await? {
        Err(Error::Forbidden(
            "this setup link is not valid (any more)".into(),
        ))
    } else {
        Err(Error::Forbidden(
            "setup is already done: sign in, or ask an admin for an account".into(),
        ))
    }
}

/// How long a replica's claim on the setup token lasts without renewal (it renews every
/// third of that while it runs).
pub const SETUP_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Makes `token` the one outstanding setup token, held by `holder` for `lease`, if setup is
/// open and no other replica's claim is running; renews the claim when `token` already is
/// the outstanding one. `true` when `token` is the outstanding one now (its link works on
/// every replica); `false` when setup is done or another replica holds a live token.
///
/// ```no_run
/// # async fn f(engine: &inloop_core::Engine) -> inloop_core::Result<()> {
/// use inloop_core::users;
/// let token = users::random_token();
/// if users::claim_setup_token(engine, &token, "replica-1", users::SETUP_LEASE).await? {
///     println!("/setup?token={token}");
/// }
/// # Ok(()) }
/// ```
pub async fn claim_setup_token(
    engine: &Engine,
    token: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<bool> {
    let now = now_ms();
    let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    engine
        .store()
        .claim_setup_token(&sha256_hex(token), holder, now, until)
        .await
}

/// Withdraws `token` if it is the outstanding setup token (its replica stops): the next
/// replica to start, or a running one at its next renewal, mints a new one.
pub async fn release_setup_token(engine: &Engine, token: &str) -> Result<()> {
    engine.store().release_setup_token(&sha256_hex(token)).await
}

/// Whether `token` is the outstanding setup token while setup is open (constant-time).
pub async fn setup_token_valid(engine: &Engine, token: &str) -> Result<bool> {
    if token.is_empty() || !setup_open(engine).await? {
        return Ok(false);
    }
    Ok(engine
        .store()
        .setup_token()
        .await?
        .is_some_and(|(hash, ..)| same_secret(&hash, &sha256_hex(token))))
}

/// Who holds the outstanding setup token, since when (ms), and until when its claim runs.
pub async fn setup_token_holder(engine: &Engine) -> Result<Option<(String, i64, i64)>> {
    Ok(engine
        .store()
        .setup_token()
        .await?
        .map(|(_, holder, since, until)| (holder, since, until)))
}

/// Every user, by name.
pub async fn list_users(engine: &Engine) -> Result<Vec<User>> {
    engine.store().list_users().await
}

/// The user named `name`.
pub async fn user(engine: &Engine, name: &str) -> Result<User> {
    engine
        .store()
        .user_by_name(&name.to_ascii_lowercase())
        .await?
        .ok_or_else(|| Error::Missing(format!("user {name:?}")))
}

/// Disables (signs out everywhere, refuses sign-in) or re-enables a user.
pub async fn set_disabled(engine: &Engine, name: &str, disabled: bool) -> Result<User> {
    let now = now_ms();
    let name = name.to_ascii_lowercase();
    if !engine
        .store()
        .set_user_disabled(&name, disabled.then_some(now), now)
        .await?
    {
        return Err(Error::Missing(format!("user {name:?}")));
    }
    user(engine, &name).await
}

/// Sets a new password and signs the user out everywhere.
pub async fn reset_password(engine: &Engine, name: &str, password: &str) -> Result<User> {
    check_password(password)?;
    let name = name.to_ascii_lowercase();
    let hash = hash_password(password).await?;
    if !engine
        .store()
        .set_user_password(&name, &hash, now_ms())
        .await?
    {
        return Err(Error::Missing(format!("user {name:?}")));
    }
    user(engine, &name).await
}

/// The user `login` (name or e-mail) if `password` is theirs and they are not disabled;
/// `unauthorized` otherwise, with one message for every cause.
pub async fn check_login(engine: &Engine, login: &str, password: &str) -> Result<User> {
    let refused = || Error::Unauthorized("wrong user name or password".into());
    let login = login.trim().to_ascii_lowercase();
    if login.is_empty() || login.contains('\0') || password.len() > MAX_PASSWORD_BYTES {
        return Err(refused());
    }
    match engine.store().user_for_login(&login).await? {
        Some((user, hash)) => {
            if verify_password(password, &hash).await && user.disabled_at.is_none() {
                Ok(user)
            } else {
                Err(refused())
            }
        }
        None => {
            verify_password(password, &dummy_hash().await).await;
            Err(refused())
        }
    }
}

/// A signed-in session: the browser holds `token` (in an HttpOnly cookie); forms carry `csrf`.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// Starts a session for `user`; returns the cookie token and the session.
pub async fn start_session(engine: &Engine, user: &User) -> Result<(String, Session)> {
    let token = random_token();
    let csrf = random_token();
    let now = now_ms();
    engine
        .store()
        .insert_session(
            &sha256_hex(&token),
            &user.id,
            &csrf,
            now,
            now + SESSION_MAX_MS,
        )
        .await?;
    Ok((
        token,
        Session {
            user: user.clone(),
            csrf,
        },
    ))
}

/// The live session `token` names: `None` when unknown, expired, idle too long, or its user
/// is disabled (such a session is deleted).
pub async fn session(engine: &Engine, token: &str) -> Result<Option<Session>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let hash = sha256_hex(token);
    let store = engine.store();
    let Some((user, csrf, last_seen, expires_at)) = store.session(&hash).await? else {
        return Ok(None);
    };
    let now = now_ms();
    if expires_at <= now || last_seen + SESSION_IDLE_MS <= now || user.disabled_at.is_some() {
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    if last_seen + TOUCH_EVERY_MS <= now
        && let Err(e) = store.touch_session(&hash, now).await
    {
        tracing::warn!(error = %e, "inloop: cannot record a session's use");
    }
    Ok(Some(Session { user, csrf }))
}

/// Ends the session (signing out).
pub async fn end_session(engine: &Engine, token: &str) -> Result<()> {
    engine.store().delete_session(&sha256_hex(token)).await
}

/// Deletes expired and idle sessions; returns how many.
pub async fn purge_sessions(engine: &Engine) -> Result<u64> {
    let now = now_ms();
    engine
        .store()
        .delete_stale_sessions(now, now - SESSION_IDLE_MS)
        .await
}

/// 32 random bytes, URL-safe base64 (43 characters): session tokens, CSRF tokens, setup
/// links.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    crate::apikeys::base64_url(&bytes)
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
