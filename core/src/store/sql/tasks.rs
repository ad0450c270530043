//! Task rows: creation (with its audit row and deliveries), reads, the listing and its counts
//! (within what the viewer may see), and what the sweeps find due.

macro_rules! sql_tasks {
    (
        store = $Store:ident,
        row = $Row:ty,
        begin_write = $begin:literal,
        assignees = $assignees:literal,
        assignees_len = $assignees_len:literal,
        handles_pre = $handles_pre:literal,
        handles_post = $handles_post:literal $(,)?
    ) => {
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
                traceparent: r.try_get("traceparent")?,
            })
        }

        impl $Store {
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
                    "$23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36) ",
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
                .bind(&t.traceparent)
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
        }
    };
}
