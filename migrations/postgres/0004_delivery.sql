-- The delivery engine: endpoints, events (the body is serialised once and stored as bytes),
-- one delivery per event and endpoint (its id is stable across retries), and every attempt.

ALTER TABLE merchants ADD COLUMN secrets_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE endpoints (
    id              TEXT PRIMARY KEY,
    merchant_id     TEXT NOT NULL REFERENCES merchants(id) ON DELETE CASCADE,
    mode            TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    url             TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    event_types     TEXT NOT NULL DEFAULT '',
    scheme          TEXT NOT NULL CHECK (scheme IN ('bolt', 'standard', 'both')),
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    max_in_flight   BIGINT NOT NULL,
    timeout_ms      BIGINT NOT NULL,
    headers         TEXT NOT NULL DEFAULT '{}',
    disabled_reason TEXT,
    disabled_at     BIGINT,
    failing_since   BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX endpoints_by_merchant ON endpoints (merchant_id, mode, id);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants(id) ON DELETE CASCADE,
    mode        TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    type        TEXT NOT NULL,
    body        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_by_merchant ON events (merchant_id, mode, id);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    merchant_id     TEXT NOT NULL,
    mode            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    leased_by       TEXT,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_merchant ON deliveries (merchant_id, mode, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);

CREATE TABLE delivery_attempts (
    id            TEXT PRIMARY KEY,
    delivery_id   TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt       BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    status_code   BIGINT,
    latency_ms    BIGINT NOT NULL,
    error_class   TEXT,
    response_body TEXT NOT NULL DEFAULT '',
    signatures    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt);
