-- inloop schema v8 (PostgreSQL): exactly-once effects (`once(key, fn)` in the SDKs) and their
-- append-only, hash-chained audit trail. (Versions 6 and 7 belong to other features; the
-- runner applies whatever is missing, gaps included.)

-- One row per (namespace, key). `running`: an attempt started (token, started_at, started_by)
-- and has not recorded an outcome: to every other caller the effect is in doubt. `done`: the
-- result is recorded and returned forever. `failed`: the function raised and the SDK released
-- the effect; `retry_allowed`: a person allowed another attempt. A begin on either of those
-- two starts the next attempt.
CREATE TABLE inloop_effects (
    id          TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7; names the effect in its audit rows
    namespace   TEXT NOT NULL,
    key         TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'retry_allowed')),
    attempt     BIGINT NOT NULL,               -- 1, 2 ... (attempts started)
    token       TEXT,                          -- the attempt's random token (compare-and-set)
    started_at  BIGINT NOT NULL,               -- of the current or last attempt
    started_by  TEXT,                          -- who or which process (e.g. python:host:pid)
    finished_at BIGINT,
    result      TEXT,                          -- JSON text, when done (kept exactly as given)
    error       TEXT,                          -- why the last attempt failed, when it did
    resolved_by TEXT,                          -- the person who resolved it in doubt, if anyone
    resolved_at BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    audit_seq   BIGINT NOT NULL,               -- head of the effect's audit chain
    audit_head  TEXT NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX inloop_effects_state ON inloop_effects (state, started_at);

CREATE TABLE inloop_effect_audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    effect_id TEXT COLLATE "C" NOT NULL REFERENCES inloop_effects (id),
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT,
    kind      TEXT NOT NULL,
    data      TEXT NOT NULL,                    -- canonical JSON (hashed as such)
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (effect_id, seq)
);
-- Reuses the function of inloop_audit (schema v1): audit rows are never changed.
CREATE TRIGGER inloop_effect_audit_append_only BEFORE UPDATE OR DELETE ON inloop_effect_audit
FOR EACH ROW EXECUTE FUNCTION inloop_audit_append_only();
