//! Exactly-once effects: the locked-row transition, reads, and the effect audit chain.

macro_rules! sql_effects {
    (
        store = $Store:ident,
        row = $Row:ty,
        begin_write = $begin:literal,
        lock_row = $lock:literal $(,)?
    ) => {
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

        impl $Store {
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
        }
    };
}
