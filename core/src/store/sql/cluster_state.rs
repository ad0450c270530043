//! State every replica of `inloop serve` shares (schema v9): the Slack replay cache, failed
//! sign-ins (throttling) and the first-run setup token. Each row carries its expiry;
//! `purge_cluster_state` drops what has expired, so the tables hold one window's worth.

macro_rules! sql_cluster_state {
    (
        store = $Store:ident,
        begin_write = $begin:literal $(,)?
    ) => {
        impl $Store {
            /// Records a Slack request signature; `true` the first time it is seen (or when its
            /// previous sighting has expired), `false` for a replay, whichever replica saw it.
            pub async fn slack_first_sight(&self, signature: &str, now: i64, expires_at: i64) -> Result<bool> {
                Ok(sqlx::query(
                    "INSERT INTO inloop_slack_seen (signature, seen_at, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (signature) DO UPDATE SET seen_at = excluded.seen_at, \
                     expires_at = excluded.expires_at WHERE inloop_slack_seen.expires_at <= excluded.seen_at",
                )
                .bind(signature)
                .bind(now)
                .bind(expires_at)
                .execute(&self.writer)
                .await?
                .rows_affected()
                    == 1)
            }

            /// How many failures `key_hash` has at or after `since`, and the oldest of them.
            pub async fn login_failures(&self, key_hash: &str, since: i64) -> Result<(i64, Option<i64>)> {
                let r = sqlx::query(
                    "SELECT count(*) AS n, min(at) AS oldest FROM inloop_login_failures \
                     WHERE key_hash = $1 AND at >= $2",
                )
                .bind(key_hash)
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
                Ok((r.try_get("n")?, r.try_get("oldest")?))
            }

            /// Records one failed sign-in under each of `key_hashes` (one transaction).
            pub async fn record_login_failure(&self, key_hashes: &[String], now: i64, expires_at: i64) -> Result<()> {
                let mut tx = self.writer.begin_with($begin).await?;
                for k in key_hashes {
                    sqlx::query("INSERT INTO inloop_login_failures (key_hash, at, expires_at) VALUES ($1, $2, $3)")
                        .bind(k)
                        .bind(now)
                        .bind(expires_at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// Forgets the failures of `key_hash` (a successful sign-in).
            pub async fn clear_login_failures(&self, key_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM inloop_login_failures WHERE key_hash = $1")
                    .bind(key_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            /// Makes `token_hash` the outstanding setup token, held by `holder` until
            /// `lease_until`, if setup is open and no other token's lease is running; renews
            /// the lease when `token_hash` already is the token. `true` when this token now is
            /// the one.
            pub async fn claim_setup_token(
                &self, token_hash: &str, holder: &str, now: i64, lease_until: i64,
            ) -> Result<bool> {
                Ok(sqlx::query(
                    "INSERT INTO inloop_setup_token (id, token_hash, holder, created_at, lease_until) \
                     SELECT 1, CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT), CAST($4 AS BIGINT) \
                     WHERE NOT EXISTS (SELECT 1 FROM inloop_users) AND NOT EXISTS (SELECT 1 FROM inloop_setup) \
                     ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, holder = excluded.holder, \
                     created_at = CASE WHEN inloop_setup_token.token_hash = excluded.token_hash \
                     THEN inloop_setup_token.created_at ELSE excluded.created_at END, \
                     lease_until = excluded.lease_until \
                     WHERE inloop_setup_token.token_hash = excluded.token_hash \
                     OR inloop_setup_token.lease_until <= excluded.created_at",
                )
                .bind(token_hash)
                .bind(holder)
                .bind(now)
                .bind(lease_until)
                .execute(&self.writer)
                .await?
                .rows_affected()
                    == 1)
            }

            /// Withdraws `token_hash` if it is the outstanding setup token (its holder stops).
            pub async fn release_setup_token(&self, token_hash: &str) -> Result<()> {
                sqlx::query("DELETE FROM inloop_setup_token WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            /// The outstanding setup token: its hash, holder, creation and lease end.
            pub async fn setup_token(&self) -> Result<Option<(String, String, i64, i64)>> {
                let row = sqlx::query(
                    "SELECT token_hash, holder, created_at, lease_until FROM inloop_setup_token WHERE id = 1",
                )
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(r) => Ok(Some((
                        r.try_get("token_hash")?,
                        r.try_get("holder")?,
                        r.try_get("created_at")?,
                        r.try_get("lease_until")?,
                    ))),
                    None => Ok(None),
                }
            }

            /// Deletes expired replay entries and throttle rows; how many rows went.
            pub async fn purge_cluster_state(&self, now: i64) -> Result<u64> {
                let a = sqlx::query("DELETE FROM inloop_slack_seen WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                let b = sqlx::query("DELETE FROM inloop_login_failures WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(a + b)
            }
        }
    };
}
