-- Retention (issue 15).
--
-- Deleting an endpoint marks it (`deleted_at`, and it stops taking deliveries at once); the
-- retention task then removes its attempts, deliveries and finally the row in small batches,
-- so a long history is never removed in one transaction.
--
-- Pruning a chain's oldest audit entries records where the chain now starts: the last pruned
-- entry's seq and hash, with a MAC under the audit key (see src/audit/mod.rs).
--
-- Reclaiming space: new files are created with `auto_vacuum = INCREMENTAL` (connection
-- options); an existing file is converted right after the migrations by the store
-- (`PRAGMA auto_vacuum = INCREMENTAL; VACUUM;`), not here: VACUUM cannot run inside a
-- transaction and sqlx 0.8 runs every SQLite migration in one (it ignores `-- no-transaction`).
ALTER TABLE endpoints ADD COLUMN deleted_at INTEGER;
CREATE INDEX endpoints_deleted ON endpoints (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE audit_checkpoints (
    chain TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL,
    mac   TEXT NOT NULL
);
