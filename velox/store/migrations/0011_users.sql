-- 0011: users, roles, 2FA, sessions and the audit of who did what (velox/auth.py, docs/web.md).
--
-- Written by velox.auth.Users. A password is kept only as its argon2id hash; a TOTP secret only
-- as a Fernet token under the credential key (velox.secrets), so a dump of the database holds
-- neither. A session is kept as the SHA-256 of its random token (the cookie's value), so a dump
-- cannot be replayed as a login either.

CREATE TABLE users (
    username        text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    role            text NOT NULL CHECK (role IN ('admin', 'trader', 'investor')),
    password_hash   text NOT NULL,
    totp_ciphertext bytea,            -- NULL: no authenticator enrolled
    -- The newest TOTP time step accepted (30 s steps since the epoch): a code is accepted only
    -- for a later step, so a used code (or an older one still in the window) fails.
    totp_last_step  bigint,
    disabled        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- What a user is linked to: an investor sees these accounts and runs; a trader trades these
-- accounts (a trader with no account link trades every account).
CREATE TABLE user_links (
    username text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    kind     text NOT NULL CHECK (kind IN ('account', 'run')),
    target   text NOT NULL CHECK (length(target) BETWEEN 1 AND 64),
    PRIMARY KEY (username, kind, target)
);

CREATE TABLE user_sessions (
    token_sha256 text PRIMARY KEY,
    username     text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    address      text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX user_sessions_user_idx ON user_sessions (username);

-- Append-only: every login, failure, logout, throttled attempt, user change and command, with
-- the user (or the name that was tried) and the client's address. Throttling counts failures
-- here, so it holds across restarts and across server processes.
CREATE TABLE auth_events (
    id       bigserial PRIMARY KEY,
    ts       timestamptz NOT NULL,
    username text NOT NULL,
    address  text NOT NULL DEFAULT '',
    event    text NOT NULL,
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX auth_events_user_idx ON auth_events (username, ts);
CREATE INDEX auth_events_address_idx ON auth_events (address, ts);
