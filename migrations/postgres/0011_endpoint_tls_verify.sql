-- Whether a delivery checks the receiver's TLS certificate. Only a test-mode endpoint may turn
-- it off (the API refuses it in live mode, and the sender verifies live endpoints regardless).
ALTER TABLE endpoints ADD COLUMN tls_verify BOOLEAN NOT NULL DEFAULT TRUE;
