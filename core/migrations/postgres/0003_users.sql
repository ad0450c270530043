-- inloop schema v3 (PostgreSQL): people, their sessions, claims, and per-namespace policy.
ALTER TABLE inloop_tasks ADD COLUMN claimed_by TEXT;
ALTER TABLE inloop_tasks ADD COLUMN claimed_at BIGINT;

CREATE TABLE inloop_users (
    id            TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7
    name          TEXT NOT NULL UNIQUE,          -- login name, lower case
    email         TEXT UNIQUE,                   -- lower case
    role          TEXT NOT NULL CHECK (role IN ('admin', 'reviewer')),
    groups        TEXT NOT NULL DEFAULT '[]',    -- JSON array of group names (lower case)
    password_hash TEXT NOT NULL,                 -- argon2id, PHC string format
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

-- Only the SHA-256 of a session token is kept; the token lives in the browser's cookie.
CREATE TABLE inloop_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES inloop_users (id),
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX inloop_sessions_user ON inloop_sessions (user_id);

-- One row once the first admin was created through the setup link (never twice).
CREATE TABLE inloop_setup (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    done_at BIGINT NOT NULL,
    user_id TEXT NOT NULL
);

-- Who may see and answer unassigned tasks of a namespace ('reviewers' when no row).
CREATE TABLE inloop_namespaces (
    name       TEXT PRIMARY KEY,
    unassigned TEXT NOT NULL CHECK (unassigned IN ('reviewers', 'admins')),
    updated_at BIGINT NOT NULL
);

-- Every audit row (creation, claim, refusal, end) announces its task to listening processes
-- at commit: the dashboard's live updates. Payload "kind:task_id".
CREATE FUNCTION inloop_audit_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inloop_changes', NEW.kind || ':' || NEW.task_id);
    RETURN NULL;
END $$;
CREATE TRIGGER inloop_audit_notify AFTER INSERT ON inloop_audit
FOR EACH ROW EXECUTE FUNCTION inloop_audit_notify();

-- Keep documents exactly as given (JSON, not JSONB): JSONB reorders object keys, and the
-- order of a schema's properties is the order of the dashboard's form fields.
ALTER TABLE inloop_tasks ALTER COLUMN payload TYPE JSON USING payload::json;
ALTER TABLE inloop_tasks ALTER COLUMN payload_schema TYPE JSON USING payload_schema::json;
ALTER TABLE inloop_tasks ALTER COLUMN response_schema TYPE JSON USING response_schema::json;
ALTER TABLE inloop_tasks ALTER COLUMN response TYPE JSON USING response::json;
