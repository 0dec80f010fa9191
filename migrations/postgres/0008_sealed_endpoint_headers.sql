-- Endpoint custom headers are usually the receiver's credentials: they are sealed under the
-- master key, bound to the endpoint (id, merchant, mode), in `headers_sealed` (JSON inside),
-- and `headers` keeps only '{}'. A migration cannot encrypt (no key in SQL): rows an older
-- version wrote in plaintext are sealed by the daemon at its next start.
ALTER TABLE endpoints ADD COLUMN headers_key_id TEXT;
ALTER TABLE endpoints ADD COLUMN headers_sealed BYTEA;
