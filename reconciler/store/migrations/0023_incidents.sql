-- Rollouts: the version that last ran and answered (a rollback target while still on its own
-- probation), and why a failed change failed, typed (reconciler/facts.py) for the page's words.
ALTER TABLE rollouts ADD COLUMN answered_spec jsonb;
ALTER TABLE rollouts ADD COLUMN answered_hash text;
ALTER TABLE rollouts ADD COLUMN answered_at   timestamptz;
ALTER TABLE rollouts ADD COLUMN failed_facts  jsonb;
