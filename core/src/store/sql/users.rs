//! Users (never their password hashes in a read), first-run setup, and the namespaces'
//! unassigned-task policies.

macro_rules! sql_users {
    (
        store = $Store:ident,
        row = $Row:ty,
        begin_write = $begin:literal $(,)?
    ) => {
        fn user_from_row(r: &$Row) -> Result<User> {
            Ok(User {
                id: parse_id(&r.try_get::<String, _>("id")?)?,
                name: r.try_get("name")?,
                email: r.try_get("email")?,
                role: r.try_get::<String, _>("role")?.parse()?,
                groups: serde_json::from_str(&r.try_get::<String, _>("groups")?)
                    .map_err(|e| Error::Internal(format!("a user's groups are not JSON: {e}")))?,
                created_at: r.try_get("created_at")?,
                disabled_at: r.try_get("disabled_at")?,
            })
        }

        /// A unique-constraint violation on a user row, as a clear error.
        fn user_conflict(e: sqlx::Error, u: &User) -> Error {
            match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => Error::InvalidArgument(format!(
                    "a user named {:?}{} already exists",
                    u.name,
                    u.email.as_deref().map(|m| format!(" or with e-mail {m:?}")).unwrap_or_default()
                )),
                _ => e.into(),
            }
        }

        impl $Store {
            pub async fn insert_user(&self, u: &User, password_hash: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO inloop_users (id, name, email, role, password_hash, created_at, \
                     updated_at, disabled_at, groups) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
                )
                .bind(u.id.to_string())
                .bind(&u.name)
                .bind(&u.email)
                .bind(u.role.as_str())
                .bind(password_hash)
                .bind(u.created_at)
                .bind(u.disabled_at)
                .bind(serde_json::to_string(&u.groups).unwrap_or_else(|_| "[]".into()))
                .execute(&self.writer)
                .await
                .map_err(|e| user_conflict(e, u))?;
                Ok(())
            }

            /// Creates the first admin, once: the `inloop_setup` row (id 1) can be inserted
            /// only once, and only while no user exists. With `token_hash`, the outstanding
            /// setup token must be that one: it is consumed in the same transaction (two
            /// replicas racing on one link: one wins). The token row goes either way.
            pub async fn complete_setup(
                &self, u: &User, password_hash: &str, token_hash: Option<&str>,
            ) -> Result<bool> {
                let mut tx = self.writer.begin_with($begin).await?;
                if let Some(h) = token_hash {
                    let consumed = sqlx::query("DELETE FROM inloop_setup_token WHERE id = 1 AND token_hash = $1")
                        .bind(h)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if consumed != 1 {
                        return Ok(false);
                    }
                }
                let users: i64 = sqlx::query_scalar("SELECT count(*) FROM inloop_users")
                    .fetch_one(&mut *tx)
                    .await?;
                if users > 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM inloop_setup_token").execute(&mut *tx).await?;
                let done = sqlx::query(
                    "INSERT INTO inloop_setup (id, done_at, user_id) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
                )
                .bind(u.created_at)
                .bind(u.id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !done {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO inloop_users (id, name, email, role, password_hash, created_at, \
                     updated_at, disabled_at) VALUES ($1, $2, $3, $4, $5, $6, $6, NULL)",
                )
                .bind(u.id.to_string())
                .bind(&u.name)
                .bind(&u.email)
                .bind(u.role.as_str())
                .bind(password_hash)
                .bind(u.created_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| user_conflict(e, u))?;
                tx.commit().await?;
                Ok(true)
            }

            /// Whether the first-run setup is still open: no user and no setup row.
            pub async fn setup_open(&self) -> Result<bool> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT (SELECT count(*) FROM inloop_users) + (SELECT count(*) FROM inloop_setup)",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(n == 0)
            }

            /// The user whose name or e-mail is `login`, with their password hash.
            pub async fn user_for_login(&self, login: &str) -> Result<Option<(User, String)>> {
                let row = sqlx::query(concat!(
                    "SELECT ", user_cols!(), ", password_hash FROM inloop_users WHERE name = $1 OR email = $1 ",
                    "ORDER BY (name = $1) DESC LIMIT 1"
                ))
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("password_hash")?))),
                    None => Ok(None),
                }
            }

            /// The user with this e-mail address (stored lower case).
            pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
                let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM inloop_users WHERE email = $1"))
                    .bind(email.to_ascii_lowercase())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
                let row = sqlx::query(concat!("SELECT ", user_cols!(), " FROM inloop_users WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            pub async fn list_users(&self) -> Result<Vec<User>> {
                let rows = sqlx::query(concat!("SELECT ", user_cols!(), " FROM inloop_users ORDER BY name"))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(user_from_row).collect()
            }

            /// Sets (or clears) `disabled_at` and, when disabling, ends the user's sessions.
            /// Returns whether the user exists.
            pub async fn set_user_disabled(&self, name: &str, at: Option<i64>, now: i64) -> Result<bool> {
                let mut tx = self.writer.begin_with($begin).await?;
                let n = sqlx::query("UPDATE inloop_users SET disabled_at = $2, updated_at = $3 WHERE name = $1")
                    .bind(name)
                    .bind(at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if at.is_some() {
                    sqlx::query("DELETE FROM inloop_sessions WHERE user_id IN (SELECT id FROM inloop_users WHERE name = $1)")
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(n == 1)
            }

            /// Replaces the password hash and ends the user's sessions. Returns whether the
            /// user exists.
            pub async fn set_user_password(&self, name: &str, password_hash: &str, now: i64) -> Result<bool> {
                let mut tx = self.writer.begin_with($begin).await?;
                let n = sqlx::query("UPDATE inloop_users SET password_hash = $2, updated_at = $3 WHERE name = $1")
                    .bind(name)
                    .bind(password_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM inloop_sessions WHERE user_id IN (SELECT id FROM inloop_users WHERE name = $1)")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(n == 1)
            }

            /// Replaces the user's groups; returns whether the user exists.
            pub async fn set_user_groups(&self, name: &str, groups: &[String], now: i64) -> Result<bool> {
                let n = sqlx::query("UPDATE inloop_users SET groups = $2, updated_at = $3 WHERE name = $1")
                    .bind(name)
                    .bind(serde_json::to_string(groups).unwrap_or_else(|_| "[]".into()))
                    .bind(now)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            pub async fn set_namespace_policy(&self, ns: &str, unassigned: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO inloop_namespaces (name, unassigned, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET unassigned = $2, updated_at = $3",
                )
                .bind(ns)
                .bind(unassigned)
                .bind(now)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            pub async fn namespace_policies(&self) -> Result<Vec<(String, String)>> {
                let rows = sqlx::query("SELECT name, unassigned FROM inloop_namespaces ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("name")?, r.try_get("unassigned")?)))
                    .collect()
            }

            /// The unassigned-task policy of the task's namespace (`None`: the default).
            pub async fn policy_for_task(&self, id: &Uuid) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT n.unassigned FROM inloop_tasks t JOIN inloop_namespaces n ON n.name = t.namespace WHERE t.id = $1",
                )
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?)
            }
        }
    };
}
