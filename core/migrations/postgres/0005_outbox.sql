-- inloop schema v5 (PostgreSQL): the channel outbox, its attempt log, and used e-mail links.
-- (Version 4 belongs to the verifier; the runner applies whatever is missing, gaps included.)

-- One row per (task, channel, target, event): written in the transaction that creates the
-- task ('created') or ends it ('ended'), delivered by dispatchers that lease rows.
CREATE TABLE inloop_outbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     TEXT COLLATE "C" NOT NULL REFERENCES inloop_tasks (id),
    channel     TEXT NOT NULL,        -- 'webhook', 'email', 'slack', ...
    target      TEXT NOT NULL,        -- what follows "channel:" in the task's notify entry
    event       TEXT NOT NULL CHECK (event IN ('created', 'ended')),
    idem_key    TEXT NOT NULL UNIQUE, -- sent with every attempt; the receiver's dedup key
    state       TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'skipped')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,      -- not before (ms)
    lease_owner TEXT,                 -- random per claim; only its holder may finish the row
    lease_until BIGINT,
    last_error  TEXT,
    result      TEXT,                 -- JSON the channel returned (Slack: channel and ts)
    created_at  BIGINT NOT NULL,
    done_at     BIGINT,
    UNIQUE (task_id, channel, target, event)
);
CREATE INDEX inloop_outbox_due ON inloop_outbox (next_at) WHERE state = 'pending';

-- Every attempt, successful or not.
CREATE TABLE inloop_outbox_attempts (
    outbox_id   BIGINT NOT NULL REFERENCES inloop_outbox (id),
    attempt     BIGINT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'retry', 'failed', 'skipped')),
    error       TEXT,
    PRIMARY KEY (outbox_id, attempt)
);

-- E-mail links that answered (single use): inserted in the answering transaction.
CREATE TABLE inloop_link_uses (
    link_id   TEXT PRIMARY KEY,
    task_id   TEXT COLLATE "C" NOT NULL REFERENCES inloop_tasks (id),
    recipient TEXT NOT NULL,
    used_at   BIGINT NOT NULL
);
