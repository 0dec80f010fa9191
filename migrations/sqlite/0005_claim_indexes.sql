-- A claim reads back its batch by lease: without this index that read scanned every pending
-- delivery.
CREATE INDEX deliveries_by_lease ON deliveries (leased_by) WHERE leased_by IS NOT NULL;

-- The claim skips leased deliveries and busy endpoints using the index alone, without a table
-- lookup for each row it passes over.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, lease_until, endpoint_id) WHERE status = 'pending';
