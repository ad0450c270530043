//! The SQL both backends share, written once and instantiated per driver by `sql_store!`.
//!
//! Placeholders are `$1, $2 ...` (both drivers accept them); typed NULL checks use
//! `CAST($n AS TEXT)` so PostgreSQL can infer parameter types. What differs per backend is
//! passed in: how a write transaction begins (SQLite takes the write lock up front with
//! `BEGIN IMMEDIATE`, so two writers never deadlock on a lock upgrade), the row-lock suffix
//! (`FOR UPDATE` on PostgreSQL) and the migration lock. (PostgreSQL announces status changes
//! from a trigger; SQLite's watcher sees commits by itself.)

/// Columns of `inloop_tasks`, in the order `task_from_row` reads them.
macro_rules! task_cols {
    () => {
        "id, namespace, key, title, payload, payload_schema, response_schema, digest, notify, \
         assign_to, status, response, answered_by, answered_via, cancelled_by, cancel_reason, \
         created_at, updated_at, deadline, ended_at, claimed_by, claimed_at, verification, attempts, \
         rejections, verify_token, verifying_until, requested_by, policy, votes, timers, \
         callback_url"
    };
}

/// Columns of `inloop_effects`, in the order `effect_from_row` reads them.
macro_rules! effect_cols {
    () => {
        "id, namespace, key, state, attempt, token, started_at, started_by, finished_at, result, \
         error, resolved_by, resolved_at, created_at, updated_at"
    };
}

/// Columns of `inloop_users`, as `user_from_row` reads them (never the password hash).
macro_rules! user_cols {
    () => {
        "id, name, email, role, groups, created_at, disabled_at"
    };
}

/// Columns of `inloop_api_keys`, as `api_key_from_row` reads them (never the hash).
macro_rules! api_key_cols {
    () => {
        "id, name, namespace, allow_answer, created_at, last_used_at, revoked_at"
    };
}

/// What a reviewer may see, as SQL over `inloop_tasks`: assigned to one of their handles
/// (placeholder `$h`: a JSON array of name, e-mail, `role:ROLE`, groups), claimed or answered
/// by them (`$n`: their name; NULL = no restriction), or unassigned unless the namespace keeps
/// those for admins; and the assignee filter (`$a`). `elems`, `handles` and `len` are the
/// backend's JSON array functions (`handles` wraps the placeholder: `pre`, `post`).
macro_rules! visibility_sql {
    ($elems:literal, $pre:literal, $post:literal, $len:literal, $n:literal, $h:literal, $a:literal) => {
        concat!(
            "(CAST(", $n, " AS TEXT) IS NULL OR claimed_by = CAST(", $n, " AS TEXT) ",
            " OR answered_by = CAST(", $n, " AS TEXT) ",
            " OR EXISTS (SELECT 1 FROM ", $elems, " WHERE lower(a.value) IN (SELECT h.value FROM ",
            $pre, $h, $post, ")) ",
            " OR (", $len, "(inloop_tasks.assign_to) = 0 AND NOT EXISTS (SELECT 1 FROM ",
            "inloop_namespaces n WHERE n.name = inloop_tasks.namespace AND n.unassigned = 'admins'))) AND ",
            "(CAST(", $a, " AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM ", $elems,
            " WHERE lower(a.value) = lower(CAST(", $a, " AS TEXT)))) "
        )
    };
}

macro_rules! sql_store {
    (
        store = $Store:ident,
        db = $DB:ty,
        row = $Row:ty,
        begin_write = $begin:literal,
        lock_row = $lock:literal,
        skip_locked = $skip_locked:literal,
        migrate_lock = $migrate_lock:literal,
        assignees = $assignees:literal,
        assignees_len = $assignees_len:literal,
        handles_pre = $handles_pre:literal,
        handles_post = $handles_post:literal,
        migrations = $migrations:expr $(,)?
    ) => {
        use sqlx::Row as _;
        use sqlx::types::Json;
        use serde_json::Value;
        use uuid::Uuid;

        use crate::audit::{GENESIS, row_hash};
        use crate::error::{Error, Result};
        use crate::model::{AuditEvent, Task};
        use crate::schema::{canonical_json, sha256_hex};
        use crate::store::{Decision, JsonDoc, ListQuery, NewAudit, parse_id};
        use crate::apikeys::ApiKey;
        use crate::users::User;

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

        fn task_from_row(r: &$Row) -> Result<Task> {
            let status: String = r.try_get("status")?;
            Ok(Task {
                id: parse_id(&r.try_get::<String, _>("id")?)?,
                namespace: r.try_get("namespace")?,
                key: r.try_get("key")?,
                title: r.try_get("title")?,
                payload: r.try_get::<Json<Value>, _>("payload")?.0,
                payload_schema: r.try_get::<Option<Json<Value>>, _>("payload_schema")?.map(|j| j.0),
                response_schema: r.try_get::<Json<Value>, _>("response_schema")?.0,
                digest: r.try_get("digest")?,
                notify: r.try_get::<Json<Vec<String>>, _>("notify")?.0,
                assign_to: r.try_get::<Json<Vec<String>>, _>("assign_to")?.0,
                status: status.parse()?,
                response: r.try_get::<Option<Json<Value>>, _>("response")?.map(|j| j.0),
                answered_by: r.try_get("answered_by")?,
                answered_via: r.try_get("answered_via")?,
                cancelled_by: r.try_get("cancelled_by")?,
                cancel_reason: r.try_get("cancel_reason")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                deadline: r.try_get("deadline")?,
                ended_at: r.try_get("ended_at")?,
                claimed_by: r.try_get("claimed_by")?,
                claimed_at: r.try_get("claimed_at")?,
                verification: r
                    .try_get::<Option<Json<Value>>, _>("verification")?
                    .map(|j| serde_json::from_value(j.0))
                    .transpose()
                    .map_err(|e| Error::Internal(format!("stored verification spec: {e}")))?,
                attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                rejections: serde_json::from_value(r.try_get::<Json<Value>, _>("rejections")?.0)
                    .map_err(|e| Error::Internal(format!("stored rejections: {e}")))?,
                verify_token: r.try_get("verify_token")?,
                verifying_until: r.try_get("verifying_until")?,
                requested_by: r.try_get("requested_by")?,
                policy: r
                    .try_get::<Option<Json<Value>>, _>("policy")?
                    .map(|j| serde_json::from_value(j.0))
                    .transpose()
                    .map_err(|e| Error::Internal(format!("stored policy: {e}")))?,
                votes: serde_json::from_value(r.try_get::<Json<Value>, _>("votes")?.0)
                    .map_err(|e| Error::Internal(format!("stored votes: {e}")))?,
                timers: serde_json::from_value(r.try_get::<Json<Value>, _>("timers")?.0)
                    .map_err(|e| Error::Internal(format!("stored timers: {e}")))?,
                callback_url: r.try_get("callback_url")?,
            })
        }

        fn effect_from_row(r: &$Row) -> Result<crate::effects::Effect> {
            let state: String = r.try_get("state")?;
            let result: Option<String> = r.try_get("result")?;
            Ok(crate::effects::Effect {
                id: parse_id(&r.try_get::<String, _>("id")?)?,
                namespace: r.try_get("namespace")?,
                key: r.try_get("key")?,
                state: state.parse()?,
                attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
                token: r.try_get("token")?,
                started_at: r.try_get("started_at")?,
                started_by: r.try_get("started_by")?,
                finished_at: r.try_get("finished_at")?,
                result: result
                    .map(|t| serde_json::from_str(&t))
                    .transpose()
                    .map_err(|e| Error::Internal(format!("an effect's result is not JSON: {e}")))?,
                error: r.try_get("error")?,
                resolved_by: r.try_get("resolved_by")?,
                resolved_at: r.try_get("resolved_at")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        }

        fn audit_from_row(r: &$Row) -> Result<AuditEvent> {
            let data: String = r.try_get("data")?;
            Ok(AuditEvent {
                task_id: parse_id(&r.try_get::<String, _>("task_id")?)?,
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                channel: r.try_get("channel")?,
                kind: r.try_get("kind")?,
                data: serde_json::from_str(&data)
                    .map_err(|e| Error::Internal(format!("audit row data is not JSON: {e}")))?,
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            })
        }

        /// Appends rows to a task's chain inside the caller's transaction (which holds the
        /// task's row lock, or SQLite's write lock), continuing from `(seq, prev)`, the head
        /// stored on the task row; returns the new head.
        async fn append_audit(
            conn: &mut <$DB as sqlx::Database>::Connection,
            task_id: &Uuid,
            at: i64,
            (mut seq, mut prev): (i64, String),
            rows: Vec<NewAudit>,
        ) -> Result<(i64, String)> {
            let id = task_id.to_string();
            for row in rows {
                seq += 1;
                let hash = row_hash(
                    &prev, *task_id, seq, at, row.actor.as_deref(), row.channel.as_deref(),
                    row.kind, &row.data,
                );
                sqlx::query(
                    "INSERT INTO inloop_audit (task_id, seq, at, actor, channel, kind, data, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&id)
                .bind(seq)
                .bind(at)
                .bind(row.actor)
                .bind(row.channel)
                .bind(row.kind)
                .bind(canonical_json(&row.data))
                .bind(&prev)
                .bind(&hash)
                .execute(&mut *conn)
                .await?;
                prev = hash;
            }
            Ok((seq, prev))
        }

        /// Inserts outbox rows inside the caller's transaction. An existing
        /// `(task, channel, target, event)` is left alone (a replayed create adds nothing),
        /// unless `rearm`: then the row is from an earlier end of a task that was reopened and
        /// has now ended again, and it is armed afresh for this end (pending, under a new
        /// idempotency key derived from this end's time), so the new outcome is delivered too.
        async fn insert_deliveries(
            conn: &mut <$DB as sqlx::Database>::Connection,
            task_id: &Uuid,
            now: i64,
            rows: Vec<crate::store::outbox::NewDelivery>,
            rearm: bool,
        ) -> Result<()> {
            for d in rows {
                let fresh = sqlx::query(
                    "INSERT INTO inloop_outbox (task_id, channel, target, event, idem_key, state, \
                     attempts, next_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
                     ON CONFLICT (task_id, channel, target, event) DO NOTHING",
                )
                .bind(task_id.to_string())
                .bind(&d.channel)
                .bind(&d.target)
                .bind(&d.event)
                .bind(&d.idem_key)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                if !fresh && rearm {
                    // Attempts keep counting (the attempt log is keyed by them); a dispatcher
                    // still holding the old lease can no longer settle the row.
                    let key = crate::store::outbox::rearmed_key(task_id, &d, now);
                    sqlx::query(
                        "UPDATE inloop_outbox SET idem_key = $5, state = 'pending', next_at = $6, \
                         created_at = $6, lease_owner = NULL, lease_until = NULL, last_error = NULL, \
                         done_at = NULL WHERE task_id = $1 AND channel = $2 AND target = $3 AND event = $4",
                    )
                    .bind(task_id.to_string())
                    .bind(&d.channel)
                    .bind(&d.target)
                    .bind(d.event)
                    .bind(&key)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Ok(())
        }

        fn delivery_from_row(r: &$Row) -> Result<crate::store::outbox::Delivery> {
            let result: Option<String> = r.try_get("result")?;
            Ok(crate::store::outbox::Delivery {
                id: r.try_get("id")?,
                task_id: parse_id(&r.try_get::<String, _>("task_id")?)?,
                channel: r.try_get("channel")?,
                target: r.try_get("target")?,
                event: r.try_get("event")?,
                idempotency_key: r.try_get("idem_key")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                next_at: r.try_get("next_at")?,
                last_error: r.try_get("last_error")?,
                result: result.map(|t| serde_json::from_str(&t)).transpose()
                    .map_err(|e| Error::Internal(format!("outbox result is not JSON: {e}")))?,
                created_at: r.try_get("created_at")?,
                done_at: r.try_get("done_at")?,
            })
        }

        impl $Store {
            /// Applies the embedded migrations not yet applied, in one transaction.
            pub async fn migrate(&self) -> Result<()> {
                let mut tx = self.writer.begin_with($begin).await?;
                if !$migrate_lock.is_empty() {
                    sqlx::query($migrate_lock).execute(&mut *tx).await?;
                }
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS inloop_migrations (version BIGINT PRIMARY KEY, \
                     name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                )
                .execute(&mut *tx)
                .await?;
                let applied = sqlx::query("SELECT version, checksum FROM inloop_migrations")
                    .fetch_all(&mut *tx)
                    .await?;
                let known: &[(i64, &str, &str)] = $migrations;
                let newest_known = known.iter().map(|m| m.0).max().unwrap_or(0);
                let mut done = std::collections::HashMap::new();
                for r in &applied {
                    let v: i64 = r.try_get("version")?;
                    let c: String = r.try_get("checksum")?;
                    if v > newest_known {
                        return Err(Error::Config(format!(
                            "the database schema is at version {v}, newer than this inloop knows \
                             ({newest_known}); upgrade inloop"
                        )));
                    }
                    done.insert(v, c);
                }
                for (version, name, sql) in known {
                    let checksum = sha256_hex(sql);
                    match done.get(version) {
                        Some(c) if *c == checksum => continue,
                        Some(_) => {
                            return Err(Error::Config(format!(
                                "migration {version} ({name}) was changed after it was applied"
                            )));
                        }
                        None => {}
                    }
                    sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO inloop_migrations (version, name, checksum, applied_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(*version)
                    .bind(*name)
                    .bind(&checksum)
                    .bind(crate::model::now_ms())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub async fn insert_or_get(&self, t: &Task, created: NewAudit) -> Result<(Task, bool)> {
                // The `created` row is the chain's first: its hash is known before the insert.
                let head = (
                    1_i64,
                    row_hash(
                        GENESIS, t.id, 1, t.created_at, created.actor.as_deref(),
                        created.channel.as_deref(), created.kind, &created.data,
                    ),
                );
                let mut tx = self.writer.begin_with($begin).await?;
                let inserted = sqlx::query(concat!(
                    "INSERT INTO inloop_tasks (", task_cols!(), ", audit_seq, audit_head, next_timer_at) VALUES ",
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, ",
                    "$23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35) ",
                    "ON CONFLICT (namespace, key) DO NOTHING"
                ))
                .bind(t.id.to_string())
                .bind(&t.namespace)
                .bind(&t.key)
                .bind(&t.title)
                .bind(JsonDoc(&t.payload))
                .bind(t.payload_schema.as_ref().map(JsonDoc))
                .bind(JsonDoc(&t.response_schema))
                .bind(&t.digest)
                .bind(Json(&t.notify))
                .bind(Json(&t.assign_to))
                .bind(t.status.as_str())
                .bind(t.response.as_ref().map(JsonDoc))
                .bind(&t.answered_by)
                .bind(&t.answered_via)
                .bind(&t.cancelled_by)
                .bind(&t.cancel_reason)
                .bind(t.created_at)
                .bind(t.updated_at)
                .bind(t.deadline)
                .bind(t.ended_at)
                .bind(&t.claimed_by)
                .bind(t.claimed_at)
                .bind(t.verification.as_ref().map(|v| Json(v.to_json())))
                .bind(i64::from(t.attempts))
                .bind(Json(serde_json::to_value(&t.rejections).unwrap_or(Value::Null)))
                .bind(&t.verify_token)
                .bind(t.verifying_until)
                .bind(&t.requested_by)
                .bind(t.policy.as_ref().map(|p| Json(serde_json::to_value(p).unwrap_or(Value::Null))))
                .bind(Json(serde_json::to_value(&t.votes).unwrap_or(Value::Null)))
                .bind(Json(serde_json::to_value(&t.timers).unwrap_or(Value::Null)))
                .bind(&t.callback_url)
                .bind(head.0)
                .bind(&head.1)
                .bind(crate::policy::next_timer(&t.timers))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    append_audit(&mut tx, &t.id, t.created_at, (0, GENESIS.to_string()), vec![created])
                        .await?;
                    let deliveries = crate::store::outbox::deliveries(t, crate::store::outbox::CREATED);
                    insert_deliveries(&mut tx, &t.id, t.created_at, deliveries, false).await?;
                    tx.commit().await?;
                    return Ok((t.clone(), true));
                }
                let row = sqlx::query(concat!(
                    "SELECT ", task_cols!(), " FROM inloop_tasks WHERE namespace = $1 AND key = $2"
                ))
                .bind(&t.namespace)
                .bind(&t.key)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((task_from_row(&row)?, false))
            }

            pub async fn get(&self, id: &Uuid) -> Result<Option<Task>> {
                let row = sqlx::query(concat!("SELECT ", task_cols!(), " FROM inloop_tasks WHERE id = $1"))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(task_from_row).transpose()
            }

            pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Option<Task>> {
                let row = sqlx::query(concat!(
                    "SELECT ", task_cols!(), " FROM inloop_tasks WHERE namespace = $1 AND key = $2"
                ))
                .bind(namespace)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(task_from_row).transpose()
            }

            pub async fn list(&self, q: &ListQuery) -> Result<Vec<Task>> {
                let viewer = q.viewer.as_ref();
                let rows = sqlx::query(concat!(
                    "SELECT ", task_cols!(), " FROM inloop_tasks WHERE ",
                    "(CAST($1 AS TEXT) IS NULL OR namespace = CAST($1 AS TEXT)) AND ",
                    "(CAST($2 AS TEXT) IS NULL OR status = CAST($2 AS TEXT)) AND ",
                    "(CAST($3 AS TEXT) IS NULL OR substr(key, 1, length(CAST($3 AS TEXT))) = CAST($3 AS TEXT)) AND ",
                    "(CAST($4 AS BIGINT) IS NULL OR created_at >= CAST($4 AS BIGINT)) AND ",
                    "(CAST($5 AS BIGINT) IS NULL OR created_at < CAST($5 AS BIGINT)) AND ",
                    "(CAST($6 AS TEXT) IS NULL OR id < CAST($6 AS TEXT)) AND ",
                    "(CAST($11 AS BIGINT) = 0 OR EXISTS (SELECT 1 FROM inloop_outbox o ",
                    " WHERE o.task_id = inloop_tasks.id AND o.state = 'failed')) AND ",
                    visibility_sql!($assignees, $handles_pre, $handles_post, $assignees_len, "$8", "$9", "$10"),
                    "ORDER BY id DESC LIMIT $7"
                ))
                .bind(&q.namespace)
                .bind(q.status.map(|s| s.as_str()))
                .bind(&q.key_prefix)
                .bind(q.created_after)
                .bind(q.created_before)
                .bind(&q.before_id)
                .bind(q.limit)
                .bind(viewer.map(|v| &v.name))
                .bind(viewer.map(|v| serde_json::Value::from(v.handles()).to_string()))
                .bind(&q.assignee)
                .bind(i64::from(q.failed_deliveries))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(task_from_row).collect()
            }

            /// How many delivery rows are `failed` on the tasks matching the query's namespace,
            /// key prefix, viewer and assignee (what [`Self::count_by_status`] counts over).
            pub async fn count_failed_deliveries(&self, q: &ListQuery) -> Result<i64> {
                let viewer = q.viewer.as_ref();
                Ok(sqlx::query_scalar(concat!(
                    "SELECT count(*) FROM inloop_outbox o JOIN inloop_tasks ON inloop_tasks.id = o.task_id ",
                    "WHERE o.state = 'failed' AND ",
                    "(CAST($1 AS TEXT) IS NULL OR inloop_tasks.namespace = CAST($1 AS TEXT)) AND ",
                    "(CAST($2 AS TEXT) IS NULL OR substr(inloop_tasks.key, 1, length(CAST($2 AS TEXT))) = CAST($2 AS TEXT)) AND ",
                    visibility_sql!($assignees, $handles_pre, $handles_post, $assignees_len, "$3", "$4", "$5"),
                ))
                .bind(&q.namespace)
                .bind(&q.key_prefix)
                .bind(viewer.map(|v| &v.name))
                .bind(viewer.map(|v| serde_json::Value::from(v.handles()).to_string()))
                .bind(&q.assignee)
                .fetch_one(&self.pool)
                .await?)
            }

            /// How many `failed` delivery rows each of `ids` has (tasks without any are absent).
            pub async fn failed_delivery_counts(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, i64)>> {
                let mut out = Vec::new();
                // One query per chunk, with one placeholder per id (made of digits only).
                for chunk in ids.chunks(200) {
                    let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                    let sql = format!(
                        "SELECT task_id, count(*) AS n FROM inloop_outbox WHERE state = 'failed' \
                         AND task_id IN ({}) GROUP BY task_id",
                        marks.join(", ")
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        query = query.bind(id.to_string());
                    }
                    for r in query.fetch_all(&self.pool).await? {
                        out.push((parse_id(&r.try_get::<String, _>("task_id")?)?, r.try_get::<i64, _>("n")?));
                    }
                }
                Ok(out)
            }

            /// How many tasks per status match the query's namespace, key prefix, viewer and
            /// assignee (its status, time and cursor filters are ignored).
            pub async fn count_by_status(&self, q: &ListQuery) -> Result<Vec<(String, i64)>> {
                let viewer = q.viewer.as_ref();
                let rows = sqlx::query(concat!(
                    "SELECT status, count(*) AS n FROM inloop_tasks WHERE ",
                    "(CAST($1 AS TEXT) IS NULL OR namespace = CAST($1 AS TEXT)) AND ",
                    "(CAST($2 AS TEXT) IS NULL OR substr(key, 1, length(CAST($2 AS TEXT))) = CAST($2 AS TEXT)) AND ",
                    visibility_sql!($assignees, $handles_pre, $handles_post, $assignees_len, "$3", "$4", "$5"),
                    "GROUP BY status"
                ))
                .bind(&q.namespace)
                .bind(&q.key_prefix)
                .bind(viewer.map(|v| &v.name))
                .bind(viewer.map(|v| serde_json::Value::from(v.handles()).to_string()))
                .bind(&q.assignee)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get::<String, _>("status")?, r.try_get::<i64, _>("n")?)))
                    .collect()
            }

            pub async fn transition<T, F>(&self, id: &Uuid, now: i64, decide: F) -> Result<(Task, T)>
            where
                F: FnOnce(&Task) -> (Decision, T) + Send,
                T: Send,
            {
                self.transition_linked(id, now, None, decide).await
            }

            /// [`Self::transition`]; when the decision completes the task and `link` is given,
            /// the link's single-use row is inserted in the same transaction (a link already
            /// used rolls the whole answer back: `forbidden`).
            pub async fn transition_linked<T, F>(
                &self, id: &Uuid, now: i64, link: Option<&crate::store::outbox::LinkUse>, decide: F,
            ) -> Result<(Task, T)>
            where
                F: FnOnce(&Task) -> (Decision, T) + Send,
                T: Send,
            {
                let mut tx = self.writer.begin_with($begin).await?;
                let row = sqlx::query(concat!(
                    "SELECT ", task_cols!(), ", audit_seq, audit_head FROM inloop_tasks WHERE id = $1", $lock
                ))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err(Error::NotFound(id.to_string()));
                };
                let before = task_from_row(&row)?;
                let head: (i64, String) = (row.try_get("audit_seq")?, row.try_get("audit_head")?);
                let before_seq = head.0;
                let (decision, out) = decide(&before);
                let mut after = before.clone();
                let head = if decision.audit.is_empty() {
                    head
                } else {
                    append_audit(&mut tx, id, now, head, decision.audit).await?
                };
                let changed = decision.update.is_some()
                    || decision.claim.is_some()
                    || decision.verify.is_some()
                    || decision.votes.is_some()
                    || decision.timers.is_some()
                    || decision.assign_to.is_some()
                    || decision.notify.is_some();
                if let Some(v) = decision.votes {
                    after.votes = v;
                }
                if let Some(t) = decision.timers {
                    after.timers = t;
                }
                if let Some(a) = decision.assign_to {
                    after.assign_to = a;
                }
                if let Some(n) = decision.notify {
                    after.notify = n;
                }
                if let Some(v) = decision.verify {
                    after.attempts = v.attempts;
                    after.rejections = v.rejections;
                    after.verify_token = v.token;
                    after.verifying_until = v.until;
                }
                if let Some(u) = decision.update {
                    after.status = u.status;
                    after.response = u.response;
                    after.answered_by = u.answered_by;
                    after.answered_via = u.answered_via;
                    after.cancelled_by = u.cancelled_by;
                    after.cancel_reason = u.cancel_reason;
                    after.ended_at = u.ended_at;
                }
                if let Some(claim) = decision.claim {
                    after.claimed_at = claim.as_ref().map(|_| now);
                    after.claimed_by = claim;
                }
                if changed {
                    after.updated_at = now;
                    sqlx::query(
                        "UPDATE inloop_tasks SET status = $2, response = $3, answered_by = $4, \
                         answered_via = $5, cancelled_by = $6, cancel_reason = $7, ended_at = $8, \
                         updated_at = $9, audit_seq = $10, audit_head = $11, claimed_by = $12, \
                         claimed_at = $13, attempts = $14, rejections = $15, verify_token = $16, \
                         verifying_until = $17, votes = $18, timers = $19, assign_to = $20, \
                         notify = $21, next_timer_at = $22 WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .bind(after.status.as_str())
                    .bind(after.response.as_ref().map(JsonDoc))
                    .bind(&after.answered_by)
                    .bind(&after.answered_via)
                    .bind(&after.cancelled_by)
                    .bind(&after.cancel_reason)
                    .bind(after.ended_at)
                    .bind(now)
                    .bind(head.0)
                    .bind(&head.1)
                    .bind(&after.claimed_by)
                    .bind(after.claimed_at)
                    .bind(i64::from(after.attempts))
                    .bind(Json(serde_json::to_value(&after.rejections).unwrap_or(Value::Null)))
                    .bind(&after.verify_token)
                    .bind(after.verifying_until)
                    .bind(Json(serde_json::to_value(&after.votes).unwrap_or(Value::Null)))
                    .bind(Json(serde_json::to_value(&after.timers).unwrap_or(Value::Null)))
                    .bind(Json(&after.assign_to))
                    .bind(Json(&after.notify))
                    .bind(if after.status.is_final() { None } else { crate::policy::next_timer(&after.timers) })
                    .execute(&mut *tx)
                    .await?;
                } else if head.0 != before_seq {
                    sqlx::query("UPDATE inloop_tasks SET audit_seq = $2, audit_head = $3 WHERE id = $1")
                        .bind(id.to_string())
                        .bind(head.0)
                        .bind(&head.1)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(l) = link
                    && before.status == crate::model::Status::Pending
                    && after.status == crate::model::Status::Completed
                {
                    let fresh = sqlx::query(
                        "INSERT INTO inloop_link_uses (link_id, task_id, recipient, used_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (link_id) DO NOTHING",
                    )
                    .bind(&l.link_id)
                    .bind(id.to_string())
                    .bind(&l.recipient)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !fresh {
                        // Dropping the transaction rolls the answer back.
                        return Err(Error::Forbidden("this e-mail link was already used".into()));
                    }
                }
                if !decision.deliveries.is_empty() {
                    insert_deliveries(&mut tx, id, now, decision.deliveries, false).await?;
                }
                if after.status.is_final() && after.status != before.status {
                    // Every channel that showed the task, and its callback, is told it ended,
                    // with the end. A completed task that the agent's verifier reopened (or
                    // ended as verification_exhausted) ends again: those rows are re-armed.
                    let deliveries = crate::store::outbox::deliveries(&after, crate::store::outbox::ENDED);
                    insert_deliveries(&mut tx, id, now, deliveries, true).await?;
                }
                tx.commit().await?;
                Ok((after, out))
            }

            pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<Uuid>> {
                let rows = sqlx::query(
                    "SELECT id FROM inloop_tasks WHERE status = 'pending' AND deadline IS NOT NULL \
                     AND deadline <= $1 ORDER BY deadline LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| parse_id(&r.try_get::<String, _>("id")?)).collect()
            }

            /// Pending tasks with a timer due at `now` or before, earliest first.
            pub async fn timers_due(&self, now: i64, limit: i64) -> Result<Vec<Uuid>> {
                let rows = sqlx::query(
                    "SELECT id FROM inloop_tasks WHERE next_timer_at IS NOT NULL \
                     AND next_timer_at <= $1 AND status = 'pending' ORDER BY next_timer_at LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| parse_id(&r.try_get::<String, _>("id")?)).collect()
            }

            /// When the next timer or deadline of a pending task is due (`None`: none is).
            pub async fn next_due(&self) -> Result<Option<i64>> {
                let row = sqlx::query(
                    "SELECT (SELECT min(next_timer_at) FROM inloop_tasks WHERE next_timer_at IS NOT NULL \
                     AND status = 'pending') AS t, (SELECT min(deadline) FROM inloop_tasks \
                     WHERE status = 'pending' AND deadline IS NOT NULL) AS d",
                )
                .fetch_one(&self.pool)
                .await?;
                let t: Option<i64> = row.try_get("t")?;
                let d: Option<i64> = row.try_get("d")?;
                Ok(match (t, d) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }

            /// How many tasks are in each status (statuses with no task are absent).
            pub async fn status_counts(&self) -> Result<Vec<(String, i64)>> {
                let rows = sqlx::query("SELECT status, count(*) AS n FROM inloop_tasks GROUP BY status")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get::<String, _>("status")?, r.try_get::<i64, _>("n")?)))
                    .collect()
            }

            pub async fn ended_since(&self, since: i64) -> Result<Vec<Uuid>> {
                let rows = sqlx::query(
                    "SELECT id FROM inloop_tasks WHERE ended_at IS NOT NULL AND ended_at >= $1",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|r| parse_id(&r.try_get::<String, _>("id")?)).collect()
            }

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
            /// only once, and only while no user exists.
            pub async fn complete_setup(&self, u: &User, password_hash: &str) -> Result<bool> {
                let mut tx = self.writer.begin_with($begin).await?;
                let users: i64 = sqlx::query_scalar("SELECT count(*) FROM inloop_users")
                    .fetch_one(&mut *tx)
                    .await?;
                if users > 0 {
                    return Ok(false);
                }
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

            /// Whether an e-mail link was used to answer.
            pub async fn link_used(&self, link_id: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inloop_link_uses WHERE link_id = $1")
                    .bind(link_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n > 0)
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

            pub async fn audit(&self, id: &Uuid) -> Result<Vec<AuditEvent>> {
                let rows = sqlx::query(
                    "SELECT task_id, seq, at, actor, channel, kind, data, prev_hash, hash \
                     FROM inloop_audit WHERE task_id = $1 ORDER BY seq",
                )
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(audit_from_row).collect()
            }

            /// See [`crate::store::Store::effect_transition`].
            pub async fn effect_transition<T, F>(
                &self,
                namespace: &str,
                key: &str,
                now: i64,
                decide: F,
            ) -> Result<(Option<crate::effects::Effect>, T)>
            where
                F: Fn(Option<&crate::effects::Effect>) -> (crate::effects::Step, T) + Send,
                T: Send,
            {
                // A first insert can lose to a concurrent one (PostgreSQL: nothing to lock
                // yet); the loser starts over and finds the winner's row. SQLite's single
                // writer never gets here twice.
                for _ in 0..5 {
                    let mut tx = self.writer.begin_with($begin).await?;
                    let row = sqlx::query(concat!(
                        "SELECT ", effect_cols!(), ", audit_seq, audit_head FROM inloop_effects ",
                        "WHERE namespace = $1 AND key = $2", $lock
                    ))
                    .bind(namespace)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let (cur, head) = match &row {
                        Some(r) => (
                            Some(effect_from_row(r)?),
                            Some((r.try_get::<i64, _>("audit_seq")?, r.try_get::<String, _>("audit_head")?)),
                        ),
                        None => (None, None),
                    };
                    let (step, out) = decide(cur.as_ref());
                    let Some(next) = step.next else {
                        tx.rollback().await?;
                        return Ok((cur, out));
                    };
                    let inserting = head.is_none();
                    let (rows, (seq, hash)) = crate::effects::chain(
                        next.id,
                        now,
                        head.unwrap_or_else(crate::effects::genesis),
                        step.audit,
                    );
                    let result = next.result.as_ref().map(|v| v.to_string());
                    let sql = if inserting {
                        concat!(
                            "INSERT INTO inloop_effects (", effect_cols!(), ", audit_seq, audit_head) ",
                            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) ",
                            "ON CONFLICT (namespace, key) DO NOTHING"
                        )
                    } else {
                        "UPDATE inloop_effects SET state = $4, attempt = $5, token = $6, \
                         started_at = $7, started_by = $8, finished_at = $9, result = $10, \
                         error = $11, resolved_by = $12, resolved_at = $13, updated_at = $15, \
                         audit_seq = $16, audit_head = $17 \
                         WHERE id = $1 AND namespace = $2 AND key = $3 AND created_at = $14"
                    };
                    let n = sqlx::query(sql)
                        .bind(next.id.to_string())
                        .bind(&next.namespace)
                        .bind(&next.key)
                        .bind(next.state.as_str())
                        .bind(i64::from(next.attempt))
                        .bind(&next.token)
                        .bind(next.started_at)
                        .bind(&next.started_by)
                        .bind(next.finished_at)
                        .bind(result)
                        .bind(&next.error)
                        .bind(&next.resolved_by)
                        .bind(next.resolved_at)
                        .bind(next.created_at)
                        .bind(next.updated_at)
                        .bind(seq)
                        .bind(&hash)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n != 1 {
                        tx.rollback().await?;
                        if inserting {
                            continue;
                        }
                        return Err(Error::Internal(format!(
                            "effect {key:?} in namespace {namespace:?} changed under its row lock"
                        )));
                    }
                    let id = next.id.to_string();
                    for c in rows {
                        sqlx::query(
                            "INSERT INTO inloop_effect_audit (effect_id, seq, at, actor, kind, data, \
                             prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(&id)
                        .bind(c.seq)
                        .bind(now)
                        .bind(c.row.actor)
                        .bind(c.row.kind)
                        .bind(canonical_json(&c.row.data))
                        .bind(&c.prev_hash)
                        .bind(&c.hash)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    return Ok((Some(next), out));
                }
                Err(Error::Internal(format!(
                    "effect {key:?} in namespace {namespace:?}: too many concurrent first inserts"
                )))
            }

            pub async fn effect(&self, namespace: &str, key: &str) -> Result<Option<crate::effects::Effect>> {
                let row = sqlx::query(concat!(
                    "SELECT ", effect_cols!(), " FROM inloop_effects WHERE namespace = $1 AND key = $2"
                ))
                .bind(namespace)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(effect_from_row).transpose()
            }

            /// Effects by namespace and state (either may be `None`: any), oldest first.
            pub async fn effects(
                &self, namespace: Option<&str>, state: Option<&str>, limit: i64,
            ) -> Result<Vec<crate::effects::Effect>> {
                let rows = sqlx::query(concat!(
                    "SELECT ", effect_cols!(), " FROM inloop_effects ",
                    "WHERE (CAST($1 AS TEXT) IS NULL OR namespace = CAST($1 AS TEXT)) ",
                    "AND (CAST($2 AS TEXT) IS NULL OR state = CAST($2 AS TEXT)) ",
                    "ORDER BY started_at, id LIMIT $3"
                ))
                .bind(namespace)
                .bind(state)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(effect_from_row).collect()
            }

            pub async fn effects_in_doubt_count(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM inloop_effects WHERE state = 'running'")
                    .fetch_one(&self.pool)
                    .await?)
            }

            pub async fn effect_audit(&self, id: &Uuid) -> Result<Vec<crate::effects::EffectEvent>> {
                let rows = sqlx::query(
                    "SELECT effect_id, seq, at, actor, kind, data, prev_hash, hash \
                     FROM inloop_effect_audit WHERE effect_id = $1 ORDER BY seq",
                )
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let data: String = r.try_get("data")?;
                        Ok(crate::effects::EffectEvent {
                            effect_id: parse_id(&r.try_get::<String, _>("effect_id")?)?,
                            seq: r.try_get("seq")?,
                            at: r.try_get("at")?,
                            actor: r.try_get("actor")?,
                            kind: r.try_get("kind")?,
                            data: serde_json::from_str(&data).map_err(|e| {
                                Error::Internal(format!("effect audit data is not JSON: {e}"))
                            })?,
                            prev_hash: r.try_get("prev_hash")?,
                            hash: r.try_get("hash")?,
                        })
                    })
                    .collect()
            }

            /// Leases up to `limit` due deliveries for `lease_ms` to `owner`, counting an
            /// attempt on each. Rows another dispatcher holds are skipped (`SKIP LOCKED` on
            /// PostgreSQL; SQLite has a single writer); an expired lease is taken over. An
            /// `ended` row waits until its task's `created` row for the same target settled.
            pub async fn claim_deliveries(
                &self, owner: &str, now: i64, lease_ms: i64, limit: i64,
            ) -> Result<Vec<crate::store::outbox::Claimed>> {
                let rows = sqlx::query(concat!(
                    "UPDATE inloop_outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 ",
                    "WHERE id IN (SELECT o.id FROM inloop_outbox o WHERE o.state = 'pending' AND o.next_at <= $3 ",
                    " AND (o.lease_until IS NULL OR o.lease_until <= $3) ",
                    " AND (o.event = 'created' OR NOT EXISTS (SELECT 1 FROM inloop_outbox c WHERE c.task_id = o.task_id ",
                    "      AND c.channel = o.channel AND c.target = o.target AND c.event = 'created' AND c.state = 'pending')) ",
                    " ORDER BY o.next_at, o.id LIMIT $4", $skip_locked, ") ",
                    "RETURNING id, task_id, channel, target, event, idem_key, attempts, created_at"
                ))
                .bind(owner)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.writer)
                .await?;
                let mut out = rows
                    .iter()
                    .map(|r| {
                        Ok(crate::store::outbox::Claimed {
                            id: r.try_get("id")?,
                            task_id: parse_id(&r.try_get::<String, _>("task_id")?)?,
                            channel: r.try_get("channel")?,
                            target: r.try_get("target")?,
                            event: r.try_get("event")?,
                            idem_key: r.try_get("idem_key")?,
                            attempt: r.try_get("attempts")?,
                            created_at: r.try_get("created_at")?,
                            lease_owner: owner.to_string(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.sort_by_key(|c| c.id);
                Ok(out)
            }

            /// Records an attempt and, if `c`'s lease is still held, settles the row: in one
            /// transaction with the task's row lock, so a `delivered` / `delivery_failed`
            /// audit row is written exactly when the row becomes done / failed. Returns
            /// `false` when the lease was lost (another dispatcher owns the row now).
            pub async fn finish_delivery(
                &self,
                c: &crate::store::outbox::Claimed,
                worker: &str,
                started_at: i64,
                now: i64,
                finish: &crate::store::outbox::Finish,
            ) -> Result<bool> {
                use crate::store::outbox::Finish;
                let mut tx = self.writer.begin_with($begin).await?;
                let id = c.task_id.to_string();
                let head_row = sqlx::query(concat!(
                    "SELECT audit_seq, audit_head FROM inloop_tasks WHERE id = $1", $lock
                ))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
                let head: (i64, String) = (head_row.try_get("audit_seq")?, head_row.try_get("audit_head")?);
                sqlx::query(
                    "INSERT INTO inloop_outbox_attempts (outbox_id, attempt, worker, started_at, \
                     finished_at, outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (outbox_id, attempt) DO NOTHING",
                )
                .bind(c.id)
                .bind(c.attempt)
                .bind(worker)
                .bind(started_at)
                .bind(now)
                .bind(finish.outcome())
                .bind(finish.error())
                .execute(&mut *tx)
                .await?;
                let (next_at, result, done_at) = match finish {
                    Finish::Done { result } => (now, result.as_ref().map(canonical_json), Some(now)),
                    Finish::Retry { next_at, .. } => (*next_at, None, None),
                    Finish::Failed { .. } | Finish::Skipped { .. } => (now, None, Some(now)),
                };
                let held = sqlx::query(
                    "UPDATE inloop_outbox SET state = $3, next_at = $4, lease_owner = NULL, \
                     lease_until = NULL, last_error = $5, result = COALESCE($6, result), done_at = $7 \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
                )
                .bind(c.id)
                .bind(&c.lease_owner)
                .bind(finish.state())
                .bind(next_at)
                .bind(finish.error())
                .bind(result)
                .bind(done_at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !held {
                    tx.commit().await?; // keep the attempt's record
                    return Ok(false);
                }
                let data = |extra: Option<&str>| {
                    let mut d = serde_json::json!({
                        "target": c.target, "event": c.event, "attempts": c.attempt,
                        "idempotency_key": c.idem_key,
                    });
                    if let Some(e) = extra {
                        d["error"] = Value::String(e.to_string());
                    }
                    d
                };
                let audit = match finish {
                    Finish::Done { .. } => Some(NewAudit {
                        actor: None, channel: Some(c.channel.clone()),
                        kind: crate::audit::kind::DELIVERED, data: data(None),
                    }),
                    Finish::Failed { error } => Some(NewAudit {
                        actor: None, channel: Some(c.channel.clone()),
                        kind: crate::audit::kind::DELIVERY_FAILED, data: data(Some(error)),
                    }),
                    _ => None,
                };
                if let Some(a) = audit {
                    let head = append_audit(&mut tx, &c.task_id, now, head, vec![a]).await?;
                    sqlx::query("UPDATE inloop_tasks SET audit_seq = $2, audit_head = $3 WHERE id = $1")
                        .bind(&id)
                        .bind(head.0)
                        .bind(&head.1)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            /// A task's delivery rows, oldest first.
            pub async fn deliveries(&self, task_id: &Uuid) -> Result<Vec<crate::store::outbox::Delivery>> {
                let rows = sqlx::query(
                    "SELECT id, task_id, channel, target, event, idem_key, state, attempts, next_at, \
                     last_error, result, created_at, done_at FROM inloop_outbox WHERE task_id = $1 ORDER BY id",
                )
                .bind(task_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(delivery_from_row).collect()
            }

            /// Delivery rows in `state` (all states when `None`), oldest first, at most `limit`.
            pub async fn deliveries_in(&self, state: Option<&str>, limit: i64) -> Result<Vec<crate::store::outbox::Delivery>> {
                let rows = sqlx::query(
                    "SELECT id, task_id, channel, target, event, idem_key, state, attempts, next_at, \
                     last_error, result, created_at, done_at FROM inloop_outbox \
                     WHERE CAST($1 AS TEXT) IS NULL OR state = CAST($1 AS TEXT) ORDER BY id LIMIT $2",
                )
                .bind(state)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(delivery_from_row).collect()
            }

            /// The attempts recorded for one delivery row, in order.
            pub async fn delivery_attempts(&self, outbox_id: i64) -> Result<Vec<crate::store::outbox::Attempt>> {
                let rows = sqlx::query(
                    "SELECT attempt, worker, started_at, finished_at, outcome, error \
                     FROM inloop_outbox_attempts WHERE outbox_id = $1 ORDER BY attempt",
                )
                .bind(outbox_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(crate::store::outbox::Attempt {
                            attempt: r.try_get("attempt")?,
                            worker: r.try_get("worker")?,
                            started_at: r.try_get("started_at")?,
                            finished_at: r.try_get("finished_at")?,
                            outcome: r.try_get("outcome")?,
                            error: r.try_get("error")?,
                        })
                    })
                    .collect()
            }
        }
    };
}
