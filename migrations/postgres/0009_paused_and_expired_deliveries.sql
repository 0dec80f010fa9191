-- Deliveries gain two statuses: `paused` (their endpoint or merchant is disabled: out of the
-- due index until re-enabled) and `expired` (still unsent after `delivery.max_age_secs`).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'paused', 'expired'));

-- The deliveries not sent yet (pending and paused), by status, endpoint and age: pausing and
-- resuming an endpoint's queue, and the expiry sweep (per endpoint, the rows older than
-- `delivery.max_age_secs`), read only these, never the delivered history. One index for
-- both, so each delivery's insert and its move to `delivered` maintain one more index, not
-- two.
CREATE INDEX deliveries_unsent ON deliveries (status, endpoint_id, created_at)
    WHERE status = 'pending' OR status = 'paused';
-- Backfilling a window of a merchant's events (`POST /v1/endpoints/{id}/replay` with `since`).
CREATE INDEX events_by_time ON events (merchant_id, mode, created_at);
