-- inloop schema v2 (PostgreSQL): API keys for `inloop serve`. Only the SHA-256 of a key is kept.
CREATE TABLE inloop_api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,  -- UUIDv7
    name         TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,          -- SHA-256 (hex) of the whole key, `ilk_...`
    allow_answer BOOLEAN NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
