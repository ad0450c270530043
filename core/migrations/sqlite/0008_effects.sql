-- inloop schema v8 (SQLite): exactly-once effects (`once(key, fn)` in the SDKs) and their
-- append-only, hash-chained audit trail. (Versions 6 and 7 belong to other features; the
-- runner applies whatever is missing, gaps included.)

-- One row per (namespace, key). `running`: an attempt started (token, started_at, started_by)
-- and has not recorded an outcome: to every other caller the effect is in doubt. `done`: the
-- result is recorded and returned forever. `failed`: the function raised and the SDK released
-- the effect; `retry_allowed`: a person allowed another attempt. A begin on either of those
-- two starts the next attempt.
CREATE TABLE inloop_effects (
    id          TEXT PRIMARY KEY,         -- UUIDv7; names the effect in its audit rows
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'retry_allowed')),
    attempt     INTEGER NOT NULL,         -- 1, 2 ... (attempts started)
    token       TEXT,                     -- the attempt's random token (compare-and-set)
    started_at  INTEGER NOT NULL,         -- of the current or last attempt
    started_by  TEXT,                     -- who or which process (e.g. python:host:pid)
    finished_at INTEGER,
    result      TEXT,                     -- JSON, when done
    error       TEXT,                     -- why the last attempt failed, when it did
    resolved_by TEXT,                     -- the person who resolved it in doubt, if anyone
    resolved_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    audit_seq   INTEGER NOT NULL,         -- head of the effect's audit chain
    audit_head  TEXT NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX inloop_effects_state ON inloop_effects (state, started_at);

CREATE TABLE inloop_effect_audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    effect_id TEXT NOT NULL REFERENCES inloop_effects (id),
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT,
    kind      TEXT NOT NULL,
    data      TEXT NOT NULL,               -- canonical JSON (hashed as such)
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (effect_id, seq)
);
CREATE TRIGGER inloop_effect_audit_append_only_update BEFORE UPDATE ON inloop_effect_audit
BEGIN SELECT RAISE(ABORT, 'inloop audit rows are append-only'); END;
CREATE TRIGGER inloop_effect_audit_append_only_delete BEFORE DELETE ON inloop_effect_audit
BEGIN SELECT RAISE(ABORT, 'inloop audit rows are append-only'); END;
