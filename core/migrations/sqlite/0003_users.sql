-- inloop schema v3 (SQLite): people, their sessions, claims, and per-namespace policy.
ALTER TABLE inloop_tasks ADD COLUMN claimed_by TEXT;
ALTER TABLE inloop_tasks ADD COLUMN claimed_at INTEGER;

CREATE TABLE inloop_users (
    id            TEXT PRIMARY KEY,          -- UUIDv7
    name          TEXT NOT NULL UNIQUE,      -- login name, lower case
    email         TEXT UNIQUE,               -- lower case
    role          TEXT NOT NULL CHECK (role IN ('admin', 'reviewer')),
    groups        TEXT NOT NULL DEFAULT '[]',    -- JSON array of group names (lower case)
    password_hash TEXT NOT NULL,             -- argon2id, PHC string format
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);

-- Only the SHA-256 of a session token is kept; the token lives in the browser's cookie.
CREATE TABLE inloop_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES inloop_users (id),
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX inloop_sessions_user ON inloop_sessions (user_id);

-- One row once the first admin was created through the setup link (never twice).
CREATE TABLE inloop_setup (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    done_at INTEGER NOT NULL,
    user_id TEXT NOT NULL
);

-- Who may see and answer unassigned tasks of a namespace ('reviewers' when no row).
CREATE TABLE inloop_namespaces (
    name       TEXT PRIMARY KEY,
    unassigned TEXT NOT NULL CHECK (unassigned IN ('reviewers', 'admins')),
    updated_at INTEGER NOT NULL
);
