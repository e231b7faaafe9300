-- Rollouts: the version that last ran and answered (a rollback target while still on its own
-- probation), and why a failed change failed, typed (reconciler/core/facts.py) for the page's words.
ALTER TABLE rollouts ADD COLUMN answered_spec jsonb;
ALTER TABLE rollouts ADD COLUMN answered_hash text;
ALTER TABLE rollouts ADD COLUMN answered_at   timestamptz;
ALTER TABLE rollouts ADD COLUMN failed_facts  jsonb;

-- Incidents (reconciler/ops/incidents.py): one per server (or gateway-wide cause) and cause,
-- opened when it escalates, reminded while it lasts, resolved with "back up after N min".
-- A restarted gateway reads the open ones: it neither forgets nor repeats them.
CREATE TABLE incidents (
    id             uuid PRIMARY KEY,
    server         text,
    cause          text NOT NULL,
    text           text NOT NULL,
    opened_at      timestamptz NOT NULL,
    told_at        timestamptz,
    reminded_at    timestamptz,
    reminders      integer NOT NULL DEFAULT 0,
    resolved_at    timestamptz,
    resolved_told  boolean NOT NULL DEFAULT false
);
CREATE INDEX incidents_open ON incidents (opened_at) WHERE resolved_at IS NULL;
