-- inloop schema v1 (SQLite). Times are ms since the Unix epoch; JSON is stored as text.
CREATE TABLE inloop_tasks (
    id              TEXT PRIMARY KEY,      -- UUIDv7: sorts by creation time
    namespace       TEXT NOT NULL,
    key             TEXT NOT NULL,
    title           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    payload_schema  TEXT,
    response_schema TEXT NOT NULL,
    digest          TEXT NOT NULL,
    notify          TEXT NOT NULL,
    assign_to       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','completed','timed_out','cancelled','verification_exhausted')),
    response        TEXT,
    answered_by     TEXT,
    answered_via    TEXT,
    cancelled_by    TEXT,
    cancel_reason   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deadline        INTEGER,
    ended_at        INTEGER,
    -- head of the audit chain (seq and hash of the last row), so appending needs no lookup
    audit_seq       INTEGER NOT NULL,
    audit_head      TEXT NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX inloop_tasks_namespace_id ON inloop_tasks (namespace, id);
CREATE INDEX inloop_tasks_pending_deadline ON inloop_tasks (deadline) WHERE status = 'pending' AND deadline IS NOT NULL;
CREATE INDEX inloop_tasks_ended_at ON inloop_tasks (ended_at) WHERE ended_at IS NOT NULL;

-- Append-only, hash-chained audit trail. `id` grows in commit order (SQLite has one writer),
-- which the cross-process waker relies on.
CREATE TABLE inloop_audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id   TEXT NOT NULL REFERENCES inloop_tasks (id),
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT,
    channel   TEXT,
    kind      TEXT NOT NULL,
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (task_id, seq)
);
CREATE TRIGGER inloop_audit_append_only_update BEFORE UPDATE ON inloop_audit
BEGIN SELECT RAISE(ABORT, 'inloop audit rows are append-only'); END;
CREATE TRIGGER inloop_audit_append_only_delete BEFORE DELETE ON inloop_audit
BEGIN SELECT RAISE(ABORT, 'inloop audit rows are append-only'); END;
