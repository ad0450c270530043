-- inloop schema v7 (SQLite): approval policies (docs/policies.md).
-- requested_by: who asked (approvers.exclude_requester keeps them from answering).
-- policy: approvers, reminders, escalation, on_timeout (JSON), or NULL.
-- votes: the votes so far on a task with approvers (JSON array, one per person).
-- timers: reminders and escalation steps with their due and fired times (JSON array).
-- next_timer_at: the earliest unfired timer of a pending task (what the timer sweep looks for).
ALTER TABLE inloop_tasks ADD COLUMN requested_by TEXT;
ALTER TABLE inloop_tasks ADD COLUMN policy TEXT;
ALTER TABLE inloop_tasks ADD COLUMN votes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE inloop_tasks ADD COLUMN timers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE inloop_tasks ADD COLUMN next_timer_at INTEGER;
CREATE INDEX inloop_tasks_next_timer ON inloop_tasks (next_timer_at) WHERE next_timer_at IS NOT NULL;

-- Reminders add outbox events 'reminder.N' (the channels show the task again). SQLite cannot
-- change a CHECK constraint in place: the outbox is rebuilt with its rows and ids (foreign keys
-- from the attempt log are checked at commit, when the rows are back).
PRAGMA defer_foreign_keys = ON;
CREATE TABLE inloop_outbox_v6 AS SELECT * FROM inloop_outbox;
DROP TABLE inloop_outbox;
CREATE TABLE inloop_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES inloop_tasks (id),
    channel     TEXT NOT NULL,
    target      TEXT NOT NULL,
    event       TEXT NOT NULL CHECK (event IN ('created', 'ended') OR event GLOB 'reminder.[0-9]*'),
    idem_key    TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'skipped')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error  TEXT,
    result      TEXT,
    created_at  INTEGER NOT NULL,
    done_at     INTEGER,
    UNIQUE (task_id, channel, target, event)
);
INSERT INTO inloop_outbox SELECT * FROM inloop_outbox_v6;
DROP TABLE inloop_outbox_v6;
CREATE INDEX inloop_outbox_due ON inloop_outbox (next_at) WHERE state = 'pending';
CREATE INDEX inloop_outbox_failed ON inloop_outbox (task_id) WHERE state = 'failed';
