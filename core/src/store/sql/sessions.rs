//! Dashboard sessions: created, looked up with their user, touched and deleted.

macro_rules! sql_sessions {
    (
        store = $Store:ident,
        row = $Row:ty $(,)?
    ) => {
        impl $Store {
            pub async fn insert_session(
                &self, token_hash: &str, user: &Uuid, csrf: &str, now: i64, expires_at: i64,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO inloop_sessions (token_hash, user_id, csrf, created_at, last_seen_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $4, $5)",
                )
                .bind(token_hash)
                .bind(user.to_string())
                .bind(csrf)
                .bind(now)
                .bind(expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            /// The session's user, CSRF token and last-seen time (expired or not: the caller
            /// decides), if the session exists.
            pub async fn session(&self, token_hash: &str) -> Result<Option<(User, String, i64, i64)>> {
                let row = sqlx::query(
                    "SELECT u.id, u.name, u.email, u.role, u.groups, u.created_at, u.disabled_at, \
                     s.csrf, s.last_seen_at, s.expires_at \
                     FROM inloop_sessions s JOIN inloop_users u ON u.id = s.user_id WHERE s.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(r) => Ok(Some((
                        user_from_row(&r)?,
                        r.try_get("csrf")?,
                        r.try_get("last_seen_at")?,
                        r.try_get("expires_at")?,
                    ))),
                    None => Ok(None),
                }
            }

            pub async fn touch_session(&self, token_hash: &str, now: i64) -> Result<()> {
                sqlx::query("UPDATE inloop_sessions SET last_seen_at = $2 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM inloop_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            /// Removes sessions past their expiry or idle since before `idle_before`.
            pub async fn delete_stale_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM inloop_sessions WHERE expires_at <= $1 OR last_seen_at < $2")
                    .bind(now)
                    .bind(idle_before)
                    .execute(&self.writer)
                    .await?
                    .rows_affected())
            }
        }
    };
}
