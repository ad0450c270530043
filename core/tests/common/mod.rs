//! Harness for the conformance suite: one fresh database per test, on either backend.
//!
//! SQLite: a new file under the system temp directory. PostgreSQL: a new database
//! `t_<uuid>` (db names are generated, never user input) on the server named by `INLOOP_TEST_PG_URL` (created through sqlx, dropped after
//! a passing test). Without that variable the PostgreSQL variants print a skip notice and pass,
//! unless `INLOOP_REQUIRE_PG=1`, which makes the missing server a failure (CI sets it).

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use inloop_core::store::Backend;
use inloop_core::{Engine, EngineOptions};
use sqlx::{AssertSqlSafe, Connection};

/// The base URL of a PostgreSQL server for tests (any database on it).
pub const PG_URL_ENV: &str = "INLOOP_TEST_PG_URL";
/// Set to `1` to fail, not skip, the PostgreSQL variants when no server is given.
pub const REQUIRE_PG_ENV: &str = "INLOOP_REQUIRE_PG";

/// One test's database.
#[derive(Clone, Debug)]
pub struct Db {
    pub url: String,
    pub backend: Backend,
}

impl Db {
    /// Opens an engine on this database (migrating it) with default options.
    pub async fn open(&self) -> Engine {
        self.open_with(EngineOptions::default()).await
    }

    pub async fn open_with(&self, opts: EngineOptions) -> Engine {
        Engine::open(&self.url, opts)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    /// Runs raw SQL on the database with a fresh connection, bypassing the engine.
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                let r = sqlx::query(AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected());
                c.close().await?;
                r
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                let r = sqlx::query(AssertSqlSafe(sql.to_string()))
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected());
                c.close().await?;
                r
            }
        }
    }

    /// Runs a scalar count query on the database with a fresh connection.
    pub async fn raw_count(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                n
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                n
            }
        }
    }
}

/// Runs `test` against a fresh SQLite file.
pub async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "inloop-conformance-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db {
        url: format!("sqlite://{}", dir.join("x.db").display()),
        backend: Backend::Sqlite,
    };
    test(db).await;
    // Only reached when the test passed: a failed test leaves its file for inspection.
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `test` against a fresh PostgreSQL database, or skips (see the module docs).
pub async fn run_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let base = match std::env::var(PG_URL_ENV) {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => {
            if std::env::var(REQUIRE_PG_ENV).is_ok_and(|v| v.trim() == "1") {
                panic!(
                    "{REQUIRE_PG_ENV}=1 but {PG_URL_ENV} is not set: no PostgreSQL to test {name} on"
                );
            }
            eprintln!("postgres::{name} skipped: {PG_URL_ENV} not set");
            return;
        }
    };
    let db_name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("connect to {PG_URL_ENV}: {e}"));
    // Concurrent CREATE DATABASE from the same template can collide; retry briefly.
    let mut attempt = 0;
    loop {
        match sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut admin)
            .await
        {
            Ok(_) => break,
            Err(e) if attempt < 20 => {
                attempt += 1;
                eprintln!("CREATE DATABASE {db_name} failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CREATE DATABASE {db_name}: {e}"),
        }
    }
    let db = Db {
        url: with_database(&base, &db_name),
        backend: Backend::Postgres,
    };
    test(db).await;
    // Only reached when the test passed. FORCE ends the engines' leftover connections.
    let _ = sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
}

/// `postgres://u@h:p/old?x=y` with the database replaced: `postgres://u@h:p/NAME?x=y`.
pub fn with_database(url: &str, name: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let scheme_end = main.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = main[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(main.len());
    let mut out = format!("{}/{}", &main[..authority_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Polls `cond` every 5 ms until it holds, failing after `within`.
pub async fn eventually<F: FnMut() -> bool>(what: &str, within: Duration, mut cond: F) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Generates `mod sqlite` and `mod postgres`, each with one `#[tokio::test]` per listed test
/// fn (an `async fn(Db)` at the crate root of the test binary).
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    $crate::common::run_sqlite($crate::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    $crate::common::run_postgres(stringify!($name), $crate::$name).await;
                }
            )*
        }
    };
}

/// A real `inloop serve` on 127.0.0.1:0 for a test.
pub struct Served {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `engine` (API and dashboard) on a fresh loopback port.
pub async fn serve_engine(engine: Engine, opts: inloop_core::server::ServerOptions) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_listener(engine, listener, opts)
}

/// Serves `engine` on `listener` (for tests that need the address before the options, such as
/// a public URL in e-mail links). The server stops when the returned `Served` is stopped or
/// dropped.
pub fn serve_listener(
    engine: Engine,
    listener: tokio::net::TcpListener,
    opts: inloop_core::server::ServerOptions,
) -> Served {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(inloop_core::server::serve(engine, listener, opts, async {
        let _ = rx.await;
    }));
    Served {
        base,
        stop: Some(tx),
        handle,
    }
}

impl Served {
    /// Shuts the server down gracefully; panics if it takes over 5 s or fails.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.handle)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Signs `user` in to the dashboard at `base` through the sign-in form (for suites other than
/// the dashboard's own); returns the session cookie and the pages' CSRF token.
pub async fn dashboard_sign_in(base: &str, user: &str, password: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = |r: &reqwest::Response, name: &str| -> Option<String> {
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                let (k, rest) = c.split_once('=')?;
                (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
            })
    };
    let login = http.get(format!("{base}/login")).send().await.unwrap();
    let csrf = cookie(&login, "inloop_csrf").expect("a pre-session CSRF cookie");
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", format!("inloop_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("csrf", csrf.as_str()),
            ("username", user),
            ("password", password),
            ("next", "/tasks"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::SEE_OTHER,
        "sign-in of {user}"
    );
    let session = cookie(&r, "inloop_session").expect("a session cookie");
    let page = http
        .get(format!("{base}/tasks"))
        .header("cookie", format!("inloop_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find("name=\"csrf\"")
        .expect("a CSRF field on the queue");
    let tag = &page[page[..at].rfind('<').unwrap()..at + page[at..].find('>').unwrap()];
    let v = tag.split("value=\"").nth(1).unwrap();
    (session, v[..v.find('"').unwrap()].to_string())
}

/// A route's path template with its parameters filled in (a task id, an effect key, a link
/// token), for tests that call every route.
pub fn concrete_path(path: &str) -> String {
    path.replace("{id}", "01890a5d-ac96-774b-bcce-b302099a8057")
        .replace("{key}", "k")
        .replace("{token}", "t")
}

/// An `application/x-www-form-urlencoded` body.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

/// One burst agent's work, for the burst tests: create the task `burst-{i}`, then answer it.
pub async fn create_and_answer(e: Engine, i: usize) -> Result<(), inloop_core::Error> {
    let t = e
        .create(inloop_core::NewTask {
            key: Some(format!("burst-{i}")),
            title: "Approve?".into(),
            payload: serde_json::json!({ "i": i }),
            response_schema: serde_json::json!({"type": "boolean"}),
            ..Default::default()
        })
        .await?;
    e.answer(
        t.task.id,
        inloop_core::Answer {
            response: serde_json::json!(true),
            by: "ann".into(),
            channel: "sdk".into(),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_in_a_url() {
        assert_eq!(
            super::with_database("postgres://postgres@127.0.0.1:5/inloop_test", "t_1"),
            "postgres://postgres@127.0.0.1:5/t_1"
        );
        assert_eq!(
            super::with_database("postgres://u:p@h:5/db?sslmode=disable", "t_1"),
            "postgres://u:p@h:5/t_1?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://h", "t_1"),
            "postgres://h/t_1"
        );
    }
}
