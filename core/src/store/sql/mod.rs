//! The SQL both backends share, written once and instantiated per driver by `sql_store!`.
//!
//! Placeholders are `$1, $2 ...` (both drivers accept them); typed NULL checks use
//! `CAST($n AS TEXT)` so PostgreSQL can infer parameter types. What differs per backend is
//! passed in: how a write transaction begins (SQLite takes the write lock up front with
//! `BEGIN IMMEDIATE`, so two writers never deadlock on a lock upgrade), the row-lock suffix
//! (`FOR UPDATE` on PostgreSQL) and the migration lock. (PostgreSQL announces status changes
//! from a trigger; SQLite's watcher sees commits by itself.)
//!
//! `sql_store!` is the one macro a backend invokes; it expands one macro per concern (the
//! submodules here: migrations, tasks, transitions, audit, outbox, users, sessions, API keys,
//! effects, cluster state), each given only the backend differences it needs. The expansions
//! share the backend's module, so the row decoders one concern defines serve the others.

/// Columns of `inloop_tasks`, in the order `task_from_row` reads them.
macro_rules! task_cols {
    () => {
        "id, namespace, key, title, payload, payload_schema, response_schema, digest, notify, \
         assign_to, status, response, answered_by, answered_via, cancelled_by, cancel_reason, \
         created_at, updated_at, deadline, ended_at, claimed_by, claimed_at, verification, attempts, \
         rejections, verify_token, verifying_until, requested_by, policy, votes, timers, \
         callback_url, traceparent"
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

#[macro_use]
mod migrate;
#[macro_use]
mod tasks;
#[macro_use]
mod transition;
#[macro_use]
mod audit;
#[macro_use]
mod outbox;
#[macro_use]
mod users;
#[macro_use]
mod sessions;
#[macro_use]
mod api_keys;
#[macro_use]
mod effects;
#[macro_use]
mod cluster_state;

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
        use serde_json::Value;
        use sqlx::Row as _;
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::apikeys::ApiKey;
        use crate::audit::{GENESIS, row_hash};
        use crate::error::{Error, Result};
        use crate::model::{AuditEvent, Task};
        use crate::schema::{canonical_json, sha256_hex};
        use crate::store::{Decision, JsonDoc, ListQuery, NewAudit, parse_id};
        use crate::users::User;

        sql_migrate!(
            store = $Store,
            begin_write = $begin,
            migrate_lock = $migrate_lock,
            migrations = $migrations,
        );
        sql_tasks!(
            store = $Store,
            row = $Row,
            begin_write = $begin,
            assignees = $assignees,
            assignees_len = $assignees_len,
            handles_pre = $handles_pre,
            handles_post = $handles_post,
        );
        sql_transition!(
            store = $Store,
            db = $DB,
            begin_write = $begin,
            lock_row = $lock,
        );
        sql_audit!(store = $Store, db = $DB, row = $Row,);
        sql_outbox!(
            store = $Store,
            db = $DB,
            row = $Row,
            begin_write = $begin,
            lock_row = $lock,
            skip_locked = $skip_locked,
        );
        sql_users!(store = $Store, row = $Row, begin_write = $begin,);
        sql_sessions!(store = $Store, row = $Row,);
        sql_api_keys!(store = $Store, row = $Row,);
        sql_effects!(
            store = $Store,
            row = $Row,
            begin_write = $begin,
            lock_row = $lock,
        );
        sql_cluster_state!(store = $Store, begin_write = $begin,);
    };
}
