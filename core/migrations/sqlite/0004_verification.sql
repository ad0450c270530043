-- inloop schema v4 (SQLite): answer verification (docs/verification.md).
-- verification: the task's spec (rules, LLM verifier, attempts, fail policy) as JSON, or NULL.
-- attempts/rejections: rejected answers so far and why (JSON array, oldest first).
-- verify_token/verifying_until: the answer being verified by an LLM right now (a lease; the
-- verdict is applied only if the token still matches).
ALTER TABLE inloop_tasks ADD COLUMN verification TEXT;
ALTER TABLE inloop_tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inloop_tasks ADD COLUMN rejections TEXT NOT NULL DEFAULT '[]';
ALTER TABLE inloop_tasks ADD COLUMN verify_token TEXT;
ALTER TABLE inloop_tasks ADD COLUMN verifying_until INTEGER;
