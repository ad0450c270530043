-- inloop schema v6 (PostgreSQL): completion callbacks, and failed deliveries found fast.
-- callback_url: where the task's end is POSTed (a signed task.ended event through the outbox;
-- docs/channels.md). Stored normalized; NULL for none. Not part of the digest.
ALTER TABLE inloop_tasks ADD COLUMN callback_url TEXT;
-- The dashboard counts and filters failed deliveries per task.
CREATE INDEX inloop_outbox_failed ON inloop_outbox (task_id) WHERE state = 'failed';
