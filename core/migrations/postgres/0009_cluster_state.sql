-- inloop schema v9 (PostgreSQL): state every replica of `inloop serve` must share (it was per
-- process before): Slack's replay cache, failed sign-ins, and the first-run setup token.

-- Slack interactivity signatures already handled (a replay to any replica is ignored). A row
-- lives ten minutes: past Slack's five-minute window a replay fails the timestamp check.
CREATE TABLE inloop_slack_seen (
    signature  TEXT COLLATE "C" PRIMARY KEY,
    seen_at    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX inloop_slack_seen_expiry ON inloop_slack_seen (expires_at);

-- One row per failed sign-in and throttle key (SHA-256 of `login:NAME` or `addr:IP`, never
-- the name typed); a row is dropped when the throttle window it counted in has passed.
CREATE TABLE inloop_login_failures (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_hash   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX inloop_login_failures_key ON inloop_login_failures (key_hash, at);
CREATE INDEX inloop_login_failures_expiry ON inloop_login_failures (expires_at);

-- The one outstanding first-run setup token (its SHA-256), while setup is open: minted by
-- one replica (`holder`), which renews its lease; another replica takes over (a new token)
-- only once the lease has run out. Deleted when the first admin is created (same
-- transaction) or when the holder stops.
CREATE TABLE inloop_setup_token (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    token_hash  TEXT NOT NULL,
    holder      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
