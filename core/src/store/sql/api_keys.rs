//! API keys of the REST server (never their hashes in a read).

macro_rules! sql_api_keys {
    (
        store = $Store:ident,
        row = $Row:ty $(,)?
    ) => {
        fn api_key_from_row(r: &$Row) -> Result<ApiKey> {
            Ok(ApiKey {
                id: parse_id(&r.try_get::<String, _>("id")?)?,
                name: r.try_get("name")?,
                namespace: r.try_get("namespace")?,
                allow_answer: r.try_get("allow_answer")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
                revoked_at: r.try_get("revoked_at")?,
            })
        }

        impl $Store {
            pub async fn insert_api_key(&self, k: &ApiKey, hash: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO inloop_api_keys (id, name, namespace, hash, allow_answer, \
                     created_at, last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(k.id.to_string())
                .bind(&k.name)
                .bind(&k.namespace)
                .bind(hash)
                .bind(k.allow_answer)
                .bind(k.created_at)
                .bind(k.last_used_at)
                .bind(k.revoked_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
                let row = sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM inloop_api_keys WHERE hash = $1"))
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(api_key_from_row).transpose()
            }

            pub async fn api_key(&self, id: &Uuid) -> Result<Option<ApiKey>> {
                let row = sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM inloop_api_keys WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(api_key_from_row).transpose()
            }

            pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
                let rows = sqlx::query(concat!("SELECT ", api_key_cols!(), " FROM inloop_api_keys ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(api_key_from_row).collect()
            }

            /// Marks the key revoked (once; a second revoke keeps the first time). Returns
            /// whether a key with this id exists.
            pub async fn revoke_api_key(&self, id: &Uuid, now: i64) -> Result<bool> {
                sqlx::query("UPDATE inloop_api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id.to_string())
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                Ok(self.api_key(id).await?.is_some())
            }

            /// Records a use of the key, at most once per `every_ms`.
            pub async fn touch_api_key(&self, id: &Uuid, now: i64, every_ms: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE inloop_api_keys SET last_used_at = $2 WHERE id = $1 AND \
                     (last_used_at IS NULL OR last_used_at <= $3)",
                )
                .bind(id.to_string())
                .bind(now)
                .bind(now - every_ms)
                .execute(&self.writer)
                .await?;
                Ok(())
            }
        }
    };
}
