-- Nonces (X-Nonce) and idempotency keys (Idempotency-Key), both remembered per API key for 24 h.
-- They live in the database so that every daemon sharing it sees the same history.

CREATE TABLE api_nonces (
    key_id     TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX api_nonces_by_expiry ON api_nonces (expires_at);

CREATE TABLE idempotency_keys (
    key_id          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status          INTEGER,
    content_type    TEXT,
    body            BLOB,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
