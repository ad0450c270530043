-- inloop schema v7 (PostgreSQL): approval policies (docs/policies.md).
-- requested_by: who asked (approvers.exclude_requester keeps them from answering).
-- policy: approvers, reminders, escalation, on_timeout, or NULL.
-- votes: the votes so far on a task with approvers (JSON array, one per person).
-- timers: reminders and escalation steps with their due and fired times (JSON array).
-- next_timer_at: the earliest unfired timer of a pending task (what the timer sweep looks for).
ALTER TABLE inloop_tasks ADD COLUMN requested_by TEXT;
ALTER TABLE inloop_tasks ADD COLUMN policy JSONB;
ALTER TABLE inloop_tasks ADD COLUMN votes JSONB NOT NULL DEFAULT '[]';
ALTER TABLE inloop_tasks ADD COLUMN timers JSONB NOT NULL DEFAULT '[]';
ALTER TABLE inloop_tasks ADD COLUMN next_timer_at BIGINT;
CREATE INDEX inloop_tasks_next_timer ON inloop_tasks (next_timer_at) WHERE next_timer_at IS NOT NULL;

-- Reminders add outbox events 'reminder.N' (the channels show the task again).
ALTER TABLE inloop_outbox DROP CONSTRAINT inloop_outbox_event_check;
ALTER TABLE inloop_outbox ADD CONSTRAINT inloop_outbox_event_check
    CHECK (event IN ('created', 'ended') OR event ~ '^reminder\.[0-9]+$');
