-- The claim skips leased deliveries and busy endpoints using the index alone, without a table
-- lookup for each row it passes over.
--
-- SQLite only: on PostgreSQL, indexing the lease columns makes every claim and release a
-- non-HOT update, which measured slower (BENCHMARKS.md), so PostgreSQL has no 0005.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, lease_until, endpoint_id) WHERE status = 'pending';
