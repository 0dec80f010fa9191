//! Request guards that must hold across every daemon sharing the database: nonces (`X-Nonce`)
//! and idempotency keys (`Idempotency-Key`), both remembered per API key for 24 hours.
//!
//! A stored response may hold a token or secret shown once, so its body never reaches the disk
//! in plaintext: the store seals it under the master key, bound to its row (API key id and
//! Idempotency-Key), and opens it for a replay.
//!
//! A claim (`in_flight`) only holds for a short lease (`expires_at`), renewed while its request
//! runs; a claim whose process died is taken over once the lease runs out. A claim is named by
//! the time it was made (`created_at`): finishing, renewing or releasing it only touches the row
//! while it is still that claim, so a claim taken over after its lease cannot be overwritten by
//! the request that lost it.

use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Timestamp;
use crate::ids::ApiKeyId;

/// A response kept for replay (the body in plaintext here; sealed in the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What happened when a request claimed an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: run the request, then finish or abandon.
    Started,
    /// The same request already completed: replay this.
    Replay(StoredResponse),
    /// The same key is being used by a request still running.
    InFlight,
    /// The same request completed, but its stored response cannot be opened (sealed under a
    /// master key no longer loaded): it cannot be replayed.
    Unreadable,
    /// The key was used for a different request.
    Mismatch,
}

/// Nonces and idempotency keys.
#[async_trait]
pub trait GuardStore {
    /// Remembers `nonce` for `key` until `expires_at`; `false` if it is already remembered.
    async fn remember_nonce(
        &self,
        key: ApiKeyId,
        nonce: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<bool>;

    /// Claims an idempotency key for a request with `fingerprint` at `now` (the claim's name),
    /// holding it until `lease_until` unless renewed. A key whose claim or stored response has
    /// expired is claimed afresh.
    async fn begin_idempotent(
        &self,
        key: ApiKeyId,
        idempotency_key: &str,
        fingerprint: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<IdempotencyBegin>;

    /// Extends the claim made at `claimed_at` to `lease_until`; `false` if it is no longer ours.
    async fn renew_idempotent(
        &self,
        key: ApiKeyId,
        idempotency_key: &str,
        claimed_at: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;

    /// Stores the response of the claim made at `claimed_at` for replay until `expires_at`.
    async fn finish_idempotent(
        &self,
        key: ApiKeyId,
        idempotency_key: &str,
        claimed_at: Timestamp,
        response: &StoredResponse,
        expires_at: Timestamp,
    ) -> StoreResult<()>;

    /// Releases the claim made at `claimed_at` without a response (the request failed on our
    /// side, or never ran to its end).
    async fn abandon_idempotent(
        &self,
        key: ApiKeyId,
        idempotency_key: &str,
        claimed_at: Timestamp,
    ) -> StoreResult<()>;

    /// Deletes expired nonces and idempotency keys; returns how many rows went.
    async fn prune_expired(&self, now: Timestamp) -> StoreResult<u64>;
}

/// Implements [`GuardStore`] for a store type with a `pool` field.
macro_rules! impl_guard_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::GuardStore for $store {
            async fn remember_nonce(
                &self,
                key: $crate::ids::ApiKeyId,
                nonce: &str,
                now: $crate::clock::Timestamp,
                expires_at: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<bool> {
                // An expired entry may be reused; a live one may not.
                let result = sqlx::query(
                    "INSERT INTO api_nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at \
                     WHERE api_nonces.expires_at <= $4",
                )
                .bind(key.to_string())
                .bind(nonce)
                .bind($crate::clock::to_millis(expires_at))
                .bind($crate::clock::to_millis(now))
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn begin_idempotent(
                &self,
                key: $crate::ids::ApiKeyId,
                idempotency_key: &str,
                fingerprint: &str,
                now: $crate::clock::Timestamp,
                expires_at: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<$crate::store::IdempotencyBegin> {
                use $crate::store::{IdempotencyBegin, StoredResponse};
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (key_id, idempotency_key, fingerprint, state, created_at, expires_at) \
                     VALUES ($1, $2, $3, 'in_flight', $4, $5) \
                     ON CONFLICT (key_id, idempotency_key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                     state = 'in_flight', status = NULL, content_type = NULL, body = NULL, body_key_id = NULL, \
                     created_at = excluded.created_at, expires_at = excluded.expires_at \
                     WHERE idempotency_keys.expires_at <= excluded.created_at",
                )
                .bind(key.to_string())
                .bind(idempotency_key)
                .bind(fingerprint)
                .bind($crate::clock::to_millis(now))
                .bind($crate::clock::to_millis(expires_at))
                .execute(&self.pool)
                .await?;
                if claimed.rows_affected() == 1 {
                    return Ok(IdempotencyBegin::Started);
                }
                type Row = (String, String, Option<i64>, Option<String>, Option<Vec<u8>>, Option<String>);
                let row: Option<Row> = sqlx::query_as(
                    "SELECT fingerprint, state, status, content_type, body, body_key_id FROM idempotency_keys \
                     WHERE key_id = $1 AND idempotency_key = $2",
                )
                .bind(key.to_string())
                .bind(idempotency_key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    // Deleted in between (abandoned): treat like a request still running.
                    None => IdempotencyBegin::InFlight,
                    // While the first request runs, any other with the same key waits its turn.
                    Some((_, state, ..)) if state == "in_flight" => IdempotencyBegin::InFlight,
                    Some((stored, ..)) if stored != fingerprint => IdempotencyBegin::Mismatch,
                    Some((_, state, Some(status), content_type, body, body_key_id)) if state == "done" => {
                        let aad = $crate::secrets::RowAad::IdempotentResponse { api_key: key, idempotency_key };
                        let opened = match (body, body_key_id) {
                            (Some(sealed), Some(master_key)) => {
                                self.sealing()?.encryptor.open_bytes(&master_key, &sealed, &aad).map(|plain| plain.to_vec())
                            }
                            // Sealed at start; a row from an older version seen before that.
                            (Some(plain), None) => Ok(plain),
                            (None, _) => Ok(Vec::new()),
                        };
                        match opened {
                            Ok(body) => IdempotencyBegin::Replay(StoredResponse {
                                status: u16::try_from(status).unwrap_or(500),
                                content_type,
                                body,
                            }),
                            Err(err) => {
                                tracing::error!(error = %err, api_key = %key, "a stored idempotent response cannot be opened");
                                IdempotencyBegin::Unreadable
                            }
                        }
                    }
                    Some(_) => IdempotencyBegin::InFlight,
                })
            }

            async fn renew_idempotent(
                &self,
                key: $crate::ids::ApiKeyId,
                idempotency_key: &str,
                claimed_at: $crate::clock::Timestamp,
                lease_until: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<bool> {
                let renewed = sqlx::query(
                    "UPDATE idempotency_keys SET expires_at = $4 \
                     WHERE key_id = $1 AND idempotency_key = $2 AND created_at = $3 AND state = 'in_flight'",
                )
                .bind(key.to_string())
                .bind(idempotency_key)
                .bind($crate::clock::to_millis(claimed_at))
                .bind($crate::clock::to_millis(lease_until))
                .execute(&self.pool)
                .await?;
                Ok(renewed.rows_affected() == 1)
            }

            async fn finish_idempotent(
                &self,
                key: $crate::ids::ApiKeyId,
                idempotency_key: &str,
                claimed_at: $crate::clock::Timestamp,
                response: &$crate::store::StoredResponse,
                expires_at: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<()> {
                let encryptor = &self.sealing()?.encryptor;
                let aad = $crate::secrets::RowAad::IdempotentResponse { api_key: key, idempotency_key };
                let sealed = encryptor.seal_bytes(&response.body, &aad);
                sqlx::query(
                    "UPDATE idempotency_keys SET state = 'done', status = $3, content_type = $4, body = $5, \
                     body_key_id = $6, expires_at = $8 \
                     WHERE key_id = $1 AND idempotency_key = $2 AND created_at = $7 AND state = 'in_flight'",
                )
                .bind(key.to_string())
                .bind(idempotency_key)
                .bind(i64::from(response.status))
                .bind(response.content_type.as_deref())
                .bind(&sealed)
                .bind(encryptor.key_id())
                .bind($crate::clock::to_millis(claimed_at))
                .bind($crate::clock::to_millis(expires_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn abandon_idempotent(
                &self,
                key: $crate::ids::ApiKeyId,
                idempotency_key: &str,
                claimed_at: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE key_id = $1 AND idempotency_key = $2 \
                     AND created_at = $3 AND state = 'in_flight'",
                )
                .bind(key.to_string())
                .bind(idempotency_key)
                .bind($crate::clock::to_millis(claimed_at))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn prune_expired(&self, now: $crate::clock::Timestamp) -> $crate::store::StoreResult<u64> {
                let now = $crate::clock::to_millis(now);
                let nonces = sqlx::query("DELETE FROM api_nonces WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                let idempotency = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(nonces.rows_affected() + idempotency.rows_affected())
            }
        }
    };
}

pub(super) use impl_guard_store;
