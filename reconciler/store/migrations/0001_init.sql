-- The first schema: desired specs, live state, the event history, samples, intents, users.
-- Runs with search_path set to the gateway's schema; every write from the sink is idempotent.

CREATE TABLE servers (
    name          text PRIMARY KEY,
    spec          jsonb NOT NULL,
    runtime_hash  text,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE state (
    name         text PRIMARY KEY,
    pid          integer,
    create_time  double precision,
    port         integer,
    phase        text NOT NULL,
    spec_hash    text,
    started_at   timestamptz,
    restarts     integer NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id          uuid PRIMARY KEY,
    seq         bigint NOT NULL,
    at          timestamptz NOT NULL,
    server      text,
    kind        text NOT NULL,
    from_phase  text,
    to_phase    text,
    reason      text NOT NULL DEFAULT '',
    actor       text NOT NULL DEFAULT 'gateway',
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_server_at ON events (server, at);
CREATE INDEX events_at ON events (at);

CREATE TABLE intents (
    name    text PRIMARY KEY,
    intent  text NOT NULL CHECK (intent IN ('stop', 'start')),
    actor   text NOT NULL DEFAULT 'gateway',
    at      timestamptz NOT NULL DEFAULT now()
);

-- sticky automatic ports: a server keeps its port across restarts
CREATE TABLE ports (
    name         text PRIMARY KEY,
    port         integer NOT NULL UNIQUE CHECK (port BETWEEN 1 AND 65535),
    assigned_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE health_samples (
    at          timestamptz NOT NULL,
    server      text NOT NULL,
    ok          boolean NOT NULL,
    latency_ms  real,
    error       text,
    PRIMARY KEY (server, at)
);
CREATE INDEX health_samples_at ON health_samples (at);

CREATE TABLE resource_samples (
    at           timestamptz NOT NULL,
    server       text NOT NULL,
    cpu_percent  real,
    rss_bytes    bigint,
    PRIMARY KEY (server, at)
);
CREATE INDEX resource_samples_at ON resource_samples (at);

CREATE TABLE config_revisions (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    path    text NOT NULL,
    sha256  text,
    ok      boolean NOT NULL,
    error   text,
    UNIQUE (path, at)
);

CREATE TABLE users (
    name           text PRIMARY KEY,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id          text PRIMARY KEY,
    user_name   text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
