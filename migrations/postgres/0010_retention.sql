-- Retention (issue 15).
--
-- Deleting an endpoint marks it (`deleted_at`, and it stops taking deliveries at once); the
-- retention task then removes its attempts, deliveries and finally the row in small batches,
-- so a long history is never removed in one transaction.
--
-- Pruning a chain's oldest audit entries records where the chain now starts: the last pruned
-- entry's seq and hash, with a MAC under the audit key (see src/audit/mod.rs).
--
-- Deliveries and attempts are pruned by batched deletes, not partitions: BENCHMARKS.md,
-- "Retention on PostgreSQL: partitions or batched deletes (issue 15)".
ALTER TABLE endpoints ADD COLUMN deleted_at BIGINT;
CREATE INDEX endpoints_deleted ON endpoints (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE audit_checkpoints (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL,
    mac   TEXT NOT NULL
);
