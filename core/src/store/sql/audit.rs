//! The per-task audit chain: appending a row (hash-chained onto the task's head) and reading it.

macro_rules! sql_audit {
    (
        store = $Store:ident,
        db = $DB:ty,
        row = $Row:ty $(,)?
    ) => {
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

        impl $Store {
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
        }
    };
}
