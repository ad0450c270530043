//! `transition`: lock the task's row, ask the rules, apply their decision, in one transaction.

macro_rules! sql_transition {
    (
        store = $Store:ident,
        db = $DB:ty,
        begin_write = $begin:literal,
        lock_row = $lock:literal $(,)?
    ) => {
        /// Writes every mutable column of a changed task, with the audit head, inside the
        /// caller's transaction.
        async fn write_task_row(
            conn: &mut <$DB as sqlx::Database>::Connection,
            after: &Task,
            head: &(i64, String),
        ) -> Result<()> {
            sqlx::query(
                "UPDATE inloop_tasks SET status = $2, response = $3, answered_by = $4, \
                 answered_via = $5, cancelled_by = $6, cancel_reason = $7, ended_at = $8, \
                 updated_at = $9, audit_seq = $10, audit_head = $11, claimed_by = $12, \
                 claimed_at = $13, attempts = $14, rejections = $15, verify_token = $16, \
                 verifying_until = $17, votes = $18, timers = $19, assign_to = $20, \
                 notify = $21, next_timer_at = $22 WHERE id = $1",
            )
            .bind(after.id.to_string())
            .bind(after.status.as_str())
            .bind(after.response.as_ref().map(JsonDoc))
            .bind(&after.answered_by)
            .bind(&after.answered_via)
            .bind(&after.cancelled_by)
            .bind(&after.cancel_reason)
            .bind(after.ended_at)
            .bind(after.updated_at)
            .bind(head.0)
            .bind(&head.1)
            .bind(&after.claimed_by)
            .bind(after.claimed_at)
            .bind(i64::from(after.attempts))
            .bind(Json(
                serde_json::to_value(&after.rejections).unwrap_or(Value::Null),
            ))
            .bind(&after.verify_token)
            .bind(after.verifying_until)
            .bind(Json(
                serde_json::to_value(&after.votes).unwrap_or(Value::Null),
            ))
            .bind(Json(
                serde_json::to_value(&after.timers).unwrap_or(Value::Null),
            ))
            .bind(Json(&after.assign_to))
            .bind(Json(&after.notify))
            .bind(if after.status.is_final() {
                None
            } else {
                crate::policy::next_timer(&after.timers)
            })
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Records an e-mail link's single use inside the answer's transaction; a link already
        /// used is `forbidden` (the caller drops the transaction, which rolls the answer back).
        async fn use_link(
            conn: &mut <$DB as sqlx::Database>::Connection,
            l: &crate::store::outbox::LinkUse,
            id: &Uuid,
            now: i64,
        ) -> Result<()> {
            let fresh = sqlx::query(
                "INSERT INTO inloop_link_uses (link_id, task_id, recipient, used_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (link_id) DO NOTHING",
            )
            .bind(&l.link_id)
            .bind(id.to_string())
            .bind(&l.recipient)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            if fresh {
                Ok(())
            } else {
                Err(Error::Forbidden("this e-mail link was already used".into()))
            }
        }

        impl $Store {
            pub async fn transition<T, F>(
                &self,
                id: &Uuid,
                now: i64,
                decide: F,
            ) -> Result<(Task, T)>
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
                &self,
                id: &Uuid,
                now: i64,
                link: Option<&crate::store::outbox::LinkUse>,
                decide: F,
            ) -> Result<(Task, T)>
            where
                F: FnOnce(&Task) -> (Decision, T) + Send,
                T: Send,
            {
                let mut tx = self.writer.begin_with($begin).await?;
                let row = sqlx::query(concat!(
                    "SELECT ",
                    task_cols!(),
                    ", audit_seq, audit_head FROM inloop_tasks WHERE id = $1",
                    $lock
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
                let (mut decision, out) = decide(&before);
                let head = if decision.audit.is_empty() {
                    head
                } else {
                    append_audit(&mut tx, id, now, head, std::mem::take(&mut decision.audit))
                        .await?
                };
                let after = decision.apply(&before, now);
                if let Some(after) = &after {
                    write_task_row(&mut tx, after, &head).await?;
                } else if head.0 != before_seq {
                    sqlx::query(
                        "UPDATE inloop_tasks SET audit_seq = $2, audit_head = $3 WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .bind(head.0)
                    .bind(&head.1)
                    .execute(&mut *tx)
                    .await?;
                }
                let after = after.unwrap_or_else(|| before.clone());
                if let Some(l) = link
                    && before.status == crate::model::Status::Pending
                    && after.status == crate::model::Status::Completed
                {
                    use_link(&mut tx, l, id, now).await?;
                }
                if !decision.deliveries.is_empty() {
                    insert_deliveries(&mut tx, id, now, decision.deliveries, false).await?;
                }
                if after.status.is_final() && after.status != before.status {
                    // Every channel that showed the task, and its callback, is told it ended,
                    // with the end. A completed task that the agent's verifier reopened (or
                    // ended as verification_exhausted) ends again: those rows are re-armed.
                    let deliveries =
                        crate::store::outbox::deliveries(&after, crate::store::outbox::ENDED);
                    insert_deliveries(&mut tx, id, now, deliveries, true).await?;
                }
                tx.commit().await?;
                Ok((after, out))
            }
        }
    };
}
