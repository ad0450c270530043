-- inloop schema v1 (PostgreSQL). Times are ms since the Unix epoch (BIGINT) so both backends
-- share one row format; JSON is JSONB.
CREATE TABLE inloop_tasks (
    id              TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7: sorts by creation time (byte order)
    namespace       TEXT NOT NULL,
    key             TEXT NOT NULL,
    title           TEXT NOT NULL,
    payload         JSONB NOT NULL,
    payload_schema  JSONB,
    response_schema JSONB NOT NULL,
    digest          TEXT NOT NULL,
    notify          JSONB NOT NULL,
    assign_to       JSONB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','completed','timed_out','cancelled','verification_exhausted')),
    response        JSONB,
    answered_by     TEXT,
    answered_via    TEXT,
    cancelled_by    TEXT,
    cancel_reason   TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deadline        BIGINT,
    ended_at        BIGINT,
    -- head of the audit chain (seq and hash of the last row), so appending needs no lookup
    audit_seq       BIGINT NOT NULL,
    audit_head      TEXT NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX inloop_tasks_namespace_id ON inloop_tasks (namespace, id);
CREATE INDEX inloop_tasks_pending_deadline ON inloop_tasks (deadline) WHERE status = 'pending' AND deadline IS NOT NULL;
CREATE INDEX inloop_tasks_ended_at ON inloop_tasks (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE inloop_audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id   TEXT COLLATE "C" NOT NULL REFERENCES inloop_tasks (id),
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT,
    channel   TEXT,
    kind      TEXT NOT NULL,
    data      TEXT NOT NULL,     -- exact canonical JSON: the hash chain covers these bytes
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (task_id, seq)
);
CREATE FUNCTION inloop_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'inloop audit rows are append-only';
END $$;
CREATE TRIGGER inloop_audit_append_only BEFORE UPDATE OR DELETE ON inloop_audit
FOR EACH ROW EXECUTE FUNCTION inloop_audit_append_only();

-- Every status change announces itself to listening processes at commit (payload
-- "status:task_id"), in the same statement as the change: no extra round trip, and a change
-- made by hand in SQL wakes waiters too.
CREATE FUNCTION inloop_tasks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inloop_events', NEW.status || ':' || NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER inloop_tasks_notify AFTER UPDATE OF status ON inloop_tasks
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION inloop_tasks_notify();
