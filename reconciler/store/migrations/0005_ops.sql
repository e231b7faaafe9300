-- Operations: alerts sent (with their outcome) and the commits a git-synced folder applied.

CREATE TABLE alerts (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    kinds    text[] NOT NULL,
    servers  text[] NOT NULL,
    title    text NOT NULL,
    body     text NOT NULL,
    targets  integer NOT NULL DEFAULT 0,
    ok       boolean NOT NULL,
    error    text
);
CREATE INDEX alerts_at ON alerts (at);

CREATE TABLE sync_commits (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    commit    text,
    previous  text,
    ok        boolean NOT NULL,
    error     text
);
CREATE INDEX sync_commits_at ON sync_commits (at);
