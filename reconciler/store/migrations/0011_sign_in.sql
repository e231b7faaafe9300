-- Sign-in strong enough for the internet: a second factor per user (a code app, recovery
-- codes, passkeys) and sessions that remember whether the second factor was given.

ALTER TABLE users ADD COLUMN totp_secret text;          -- base32; NULL: no code app
ALTER TABLE users ADD COLUMN totp_pending text;         -- shown as a QR code, not yet confirmed
ALTER TABLE users ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0;  -- a code is accepted once

CREATE TABLE recovery_codes (
    user_name  text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    code_hash  text NOT NULL,                           -- SHA-256 of the code; the code is shown once
    used_at    timestamptz,
    PRIMARY KEY (user_name, code_hash)
);

CREATE TABLE passkeys (
    id            bytea PRIMARY KEY,                    -- the credential id
    user_name     text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    public_key    bytea NOT NULL,                       -- COSE key
    sign_count    bigint NOT NULL DEFAULT 0,
    rp_id         text NOT NULL,                        -- the address it works on
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX passkeys_user ON passkeys (user_name);

ALTER TABLE sessions ADD COLUMN second_factor boolean NOT NULL DEFAULT false;
ALTER TABLE sessions ADD COLUMN door text NOT NULL DEFAULT 'local';
