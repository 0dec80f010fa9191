-- Deliveries gain two statuses: `paused` (their endpoint or merchant is disabled: out of the
-- due index until re-enabled) and `expired` (still unsent after `delivery.max_age_secs`).
--
-- SQLite cannot change a CHECK constraint, so `deliveries` is rebuilt after SQLite's
-- procedure for other schema changes (https://www.sqlite.org/lang_altertable.html#otheralter):
-- create the new table, copy, drop the old one, rename, recreate its indexes, check the
-- foreign keys. One difference: that procedure turns foreign keys off first, but sqlx 0.8
-- runs every SQLite migration inside a transaction (it ignores `-- no-transaction` for
-- SQLite), where `PRAGMA foreign_keys` does nothing. With foreign keys on, dropping
-- `deliveries` would cascade to `delivery_attempts` and delete every attempt, so the attempts
-- are set aside in a table without foreign keys, `delivery_attempts` is dropped first and
-- recreated (as in 0004) once the new `deliveries` is in place. All of it commits or none.

CREATE TABLE deliveries_0009 (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    merchant_id     TEXT NOT NULL,
    mode            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'paused', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    leased_by       TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
INSERT INTO deliveries_0009 (id, event_id, endpoint_id, merchant_id, mode, status, attempts,
    next_attempt_at, lease_until, leased_by, last_status, last_error, delivered_at, created_at,
    updated_at)
SELECT id, event_id, endpoint_id, merchant_id, mode, status, attempts, next_attempt_at,
    lease_until, leased_by, last_status, last_error, delivered_at, created_at, updated_at
FROM deliveries;

CREATE TABLE delivery_attempts_0009 AS SELECT * FROM delivery_attempts;
DROP TABLE delivery_attempts;
DROP TABLE deliveries;
ALTER TABLE deliveries_0009 RENAME TO deliveries;

-- The indexes of 0004 and 0005, as they were.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, lease_until, endpoint_id) WHERE status = 'pending';
CREATE INDEX deliveries_by_merchant ON deliveries (merchant_id, mode, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);

-- `delivery_attempts` as 0004 made it, with its rows back.
CREATE TABLE delivery_attempts (
    id            TEXT PRIMARY KEY,
    delivery_id   TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    status_code   INTEGER,
    latency_ms    INTEGER NOT NULL,
    error_class   TEXT,
    response_body TEXT NOT NULL DEFAULT '',
    signatures    TEXT NOT NULL DEFAULT ''
);
INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms,
    error_class, response_body, signatures)
SELECT id, delivery_id, attempt, started_at, status_code, latency_ms, error_class,
    response_body, signatures
FROM delivery_attempts_0009;
DROP TABLE delivery_attempts_0009;
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt);

-- The deliveries not sent yet (pending and paused), by status, endpoint and age: pausing and
-- resuming an endpoint's queue, and the expiry sweep (per endpoint, the rows older than
-- `delivery.max_age_secs`), read only these, never the delivered history. One index for
-- both, so each delivery's insert and its move to `delivered` maintain one more index, not
-- two.
-- (Written with OR, not IN: SQLite uses a partial index for `status = 'pending'` only when
-- that term appears in the index's condition.) The endpoint comes first, not the status: with
-- `status` leading, SQLite's planner (which has no statistics here) took this index for every
-- statement that says `status = 'pending'`, such as reading a claimed batch back by id, and
-- walked the whole queue for each; a flood of 100,000 deliveries to 10 endpoints ran at a fifth
-- of its speed (BENCHMARKS.md, issue 15).
CREATE INDEX deliveries_unsent ON deliveries (endpoint_id, status, created_at)
    WHERE status = 'pending' OR status = 'paused';
-- Backfilling a window of a merchant's events (`POST /v1/endpoints/{id}/replay` with `since`).
CREATE INDEX events_by_time ON events (merchant_id, mode, created_at);

-- The procedure's foreign key check, for the two rebuilt tables: a dangling key fails the
-- migration (the CHECK refuses a non-zero count), and nothing of it is committed.
CREATE TEMP TABLE migration_0009_foreign_keys (dangling INTEGER NOT NULL CHECK (dangling = 0));
INSERT INTO migration_0009_foreign_keys
    SELECT (SELECT COUNT(*) FROM pragma_foreign_key_check('deliveries'))
         + (SELECT COUNT(*) FROM pragma_foreign_key_check('delivery_attempts'));
DROP TABLE migration_0009_foreign_keys;
