-- Keyed audit chains. Every entry's hash becomes an HMAC-SHA256 under the audit key: 32
-- random bytes made once per database, stored here sealed under the master key (one row), so
-- the chain cannot be recomputed by whoever can only write the database. `key_id` names the
-- audit key an entry was chained with; existing (unkeyed SHA-256) entries keep NULL until the
-- daemon, at its first start with the master key, checks each legacy chain and re-chains it.
CREATE TABLE audit_keys (
    slot          BIGINT PRIMARY KEY CHECK (slot = 1),
    id            TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    ciphertext    BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);

ALTER TABLE audit_events ADD COLUMN key_id TEXT;

-- Each chain's last entry, updated in the transaction of every append (which also serialises
-- appends to one chain), so deleting the last entries is detected.
CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_heads (chain, seq, hash)
SELECT e.chain, e.seq, e.hash FROM audit_events e
WHERE e.seq = (SELECT MAX(x.seq) FROM audit_events x WHERE x.chain = e.chain);
