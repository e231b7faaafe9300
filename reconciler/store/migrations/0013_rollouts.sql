-- Health-gated changes: per server, the version that last ran well through its probation
-- (run again when a change fails, and when its file does not load at start), and the
-- runtime hash of a changed version that failed and was rolled back (not retried by itself).
CREATE TABLE rollouts (
    name           text PRIMARY KEY,
    good_spec      jsonb,
    good_hash      text,
    good_at        timestamptz,
    failed_hash    text,
    failed_reason  text,
    failed_at      timestamptz
);
