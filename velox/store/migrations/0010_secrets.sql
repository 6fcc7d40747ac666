-- 0010: encrypted credentials (broker API keys and secrets, access tokens), see velox/secrets.py.
--
-- Written by velox.secrets.SecretStore. ``ciphertext`` is a Fernet token (AES-128-CBC +
-- HMAC-SHA256) under the key from VELOX_SECRET_KEY or the OS keyring; the plaintext is never
-- stored. ``expires_at`` is when the secret stops being usable (a Kite access token: about
-- 06:00 IST the next day); NULL for secrets that do not expire.

CREATE TABLE secrets (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'),
    ciphertext  bytea NOT NULL,
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
