-- inloop schema v10 (PostgreSQL): the W3C trace context a task's life is traced under.
-- (Version 9 belongs to another feature; the runner applies whatever is missing, gaps
-- included.)
-- traceparent: the agent's span when it passed one at creation, else the task's own
-- inloop.create span (docs/deployment.md, "Tracing"); NULL for none. Not part of the digest.
ALTER TABLE inloop_tasks ADD COLUMN traceparent TEXT;
