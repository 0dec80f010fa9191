-- Stored idempotent responses may hold a token or a secret (an API key's creation, a revealed
-- signing secret): their bodies are sealed under the master key, bound to their row (API key
-- id and Idempotency-Key). `body_key_id` names the master key; rows an older version stored in
-- plaintext (NULL here) are sealed by the daemon at its next start.
ALTER TABLE idempotency_keys ADD COLUMN body_key_id TEXT;
