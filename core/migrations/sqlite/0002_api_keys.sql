-- inloop schema v2 (SQLite): API keys for `inloop serve`. Only the SHA-256 of a key is kept.
CREATE TABLE inloop_api_keys (
    id           TEXT PRIMARY KEY,        -- UUIDv7
    name         TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,    -- SHA-256 (hex) of the whole key, `ilk_...`
    allow_answer INTEGER NOT NULL,        -- 0 or 1
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
