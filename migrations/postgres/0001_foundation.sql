-- Merchants, API keys, signing secrets and the audit log.
-- Times are milliseconds since the Unix epoch (INTEGER) so that comparisons are exact and the
-- same on SQLite and PostgreSQL.

CREATE TABLE merchants (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    -- bumped as the first statement of a transaction that must be serialised per merchant
    lock_version BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    merchant_id    TEXT REFERENCES merchants(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('live', 'test', 'operator')),
    name           TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    revoked_at     BIGINT,
    expires_at     BIGINT,
    last_used_at   BIGINT,
    created_at     BIGINT NOT NULL,
    CHECK ((kind = 'operator') = (merchant_id IS NULL))
);
CREATE INDEX api_keys_by_merchant ON api_keys (merchant_id, kind, id);

CREATE TABLE signing_secrets (
    id           TEXT PRIMARY KEY,
    merchant_id  TEXT NOT NULL REFERENCES merchants(id) ON DELETE CASCADE,
    mode         TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    state        TEXT NOT NULL CHECK (state IN ('active', 'pending', 'previous')),
    -- first 8 hex characters of SHA-256 of the key: not secret, shown to tell secrets apart
    fingerprint  TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    ciphertext   BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    activated_at BIGINT,
    revert_until BIGINT,
    complete_at  BIGINT
);
CREATE UNIQUE INDEX signing_secrets_one_active ON signing_secrets (merchant_id, mode) WHERE state = 'active';
CREATE UNIQUE INDEX signing_secrets_one_pending ON signing_secrets (merchant_id, mode) WHERE state = 'pending';
CREATE UNIQUE INDEX signing_secrets_one_previous ON signing_secrets (merchant_id, mode) WHERE state = 'previous';

CREATE TABLE audit_events (
    id           TEXT PRIMARY KEY,
    -- the hash chain this entry belongs to: a merchant id, or 'operator'
    chain        TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    merchant_id  TEXT,
    mode         TEXT,
    actor_key_id TEXT,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    request_id   TEXT,
    details      TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_events_by_merchant ON audit_events (merchant_id, id);
