//! The outbox: the deliveries an event causes, leasing due ones, settling them, and the
//! deliveries and attempts of a task; e-mail link uses.

macro_rules! sql_outbox {
    (
        store = $Store:ident,
        db = $DB:ty,
        row = $Row:ty,
        begin_write = $begin:literal,
        lock_row = $lock:literal,
        skip_locked = $skip_locked:literal $(,)?
    ) => {
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

            /// Whether an e-mail link was used to answer.
            pub async fn link_used(&self, link_id: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inloop_link_uses WHERE link_id = $1")
                    .bind(link_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n > 0)
            }
        }
    };
}
