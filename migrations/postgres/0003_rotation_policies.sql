-- Scheduled rotation: one policy per merchant and mode. `next_fire_at` is advanced with a
-- conditional update, so when several daemons share the database only one fires each time.
CREATE TABLE rotation_policies (
    merchant_id  TEXT NOT NULL REFERENCES merchants(id) ON DELETE CASCADE,
    mode         TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    cron         TEXT NOT NULL,
    grace_secs   BIGINT NOT NULL,
    next_fire_at BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, mode)
);
CREATE INDEX rotation_policies_due ON rotation_policies (next_fire_at);
CREATE INDEX signing_secrets_due ON signing_secrets (complete_at) WHERE state = 'pending';
CREATE INDEX signing_secrets_expiring ON signing_secrets (revert_until) WHERE state = 'previous';
