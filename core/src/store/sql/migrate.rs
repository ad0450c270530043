//! The migration runner: applies the embedded migrations in one transaction.

macro_rules! sql_migrate {
    (
        store = $Store:ident,
        begin_write = $begin:literal,
        migrate_lock = $migrate_lock:literal,
        migrations = $migrations:expr $(,)?
    ) => {
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
        }
    };
}
