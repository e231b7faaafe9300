-- Read-only API tokens (issue 25): for /metrics and the status API, made and revoked on the
-- page. Only a token's SHA-256 is kept; the token is shown once. They belong to this machine
-- like the api-token file: never in a backup, and a restore leaves them as they are.
CREATE TABLE api_tokens (
    id            text PRIMARY KEY,                     -- SHA-256 of the token
    name          text NOT NULL,                        -- what will use it, in the owner's words
    scope         text NOT NULL DEFAULT 'status',       -- what it may do: read the status
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
