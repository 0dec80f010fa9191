//! Signing secrets and their rotation. Every transition runs in one transaction holding the
//! merchant's lock: load the rows, apply the pure [`crate::secrets::rotation::apply`], write
//! the result and its audit event. The partial unique indexes (one active, one pending, one
//! previous per merchant and mode) back this up in the database itself.

use async_trait::async_trait;
use chrono::Duration;

use super::{NewAuditEvent, NewSecret, SecretRecord, SecretState, StoreResult};
use crate::clock::Timestamp;
use crate::ids::{MerchantId, SecretId};
use crate::keys::Mode;
use crate::secrets::rotation::{Command, Pending, Previous, RotationState, Slot};

/// A rotation command as the store receives it: initiation carries the sealed new secret.
pub type StoredCommand = Command<NewSecret>;

/// Signing secrets and their rotation.
#[async_trait]
pub trait SecretStore {
    /// The secret rows of one merchant and mode (sealed).
    async fn signing_secrets(
        &self,
        merchant: MerchantId,
        mode: Mode,
    ) -> StoreResult<Vec<SecretRecord>>;

    /// Applies one rotation command atomically; returns the rows afterwards.
    #[allow(clippy::too_many_arguments)]
    async fn rotate(
        &self,
        merchant: MerchantId,
        mode: Mode,
        command: StoredCommand,
        now: Timestamp,
        revert_window: Duration,
        audit: &NewAuditEvent,
    ) -> StoreResult<Vec<SecretRecord>>;

    /// Merchants and modes whose pending secret is due for completion.
    async fn due_completions(&self, now: Timestamp) -> StoreResult<Vec<(MerchantId, Mode)>>;

    /// Merchants and modes whose previous secret's revert window has passed.
    async fn expired_previous(&self, now: Timestamp) -> StoreResult<Vec<(MerchantId, Mode)>>;

    /// Every secret row sealed under `key_id` (for `hooksign rekey`).
    async fn secrets_sealed_with(&self, key_id: &str) -> StoreResult<Vec<SecretRecord>>;

    /// Replaces a row's ciphertext if it is still sealed under `old_key_id`; `false` otherwise.
    async fn reseal_secret(
        &self,
        id: SecretId,
        old_key_id: &str,
        new_key_id: &str,
        ciphertext: &[u8],
    ) -> StoreResult<bool>;
}

/// Rebuilds the state machine's view from rows. A previous secret without `revert_until`, or
/// a missing active secret, is corrupt (a state the machine does not know is refused when
/// the row is read).
pub fn rotation_state(rows: &[SecretRecord]) -> StoreResult<RotationState> {
    let slot = |row: &SecretRecord| Slot {
        id: row.id,
        created_at: row.created_at,
    };
    let mut active = None;
    let mut pending = None;
    let mut previous = None;
    for row in rows {
        match row.state {
            SecretState::Active => active = Some(slot(row)),
            SecretState::Pending => {
                pending = Some(Pending {
                    slot: slot(row),
                    complete_at: row.complete_at,
                })
            }
            SecretState::Previous => {
                let revert_until = row.revert_until.ok_or_else(|| {
                    super::StoreError::Corrupt(format!("{}: previous without revert_until", row.id))
                })?;
                previous = Some(Previous {
                    slot: slot(row),
                    revert_until,
                });
            }
        }
    }
    let active =
        active.ok_or_else(|| super::StoreError::Corrupt("no active signing secret".into()))?;
    Ok(RotationState {
        active,
        pending,
        previous,
    })
}

/// Implements [`SecretStore`] for a store type with a `pool` field.
macro_rules! impl_secret_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn secret_rows(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SecretRecord>> {
                let sql = format!(
                    "SELECT {} FROM signing_secrets WHERE merchant_id = $1 AND mode = $2 ORDER BY id",
                    $crate::store::sql::SECRET_COLUMNS
                );
                let rows: Vec<$crate::store::sql::SecretRow> = sqlx::query_as(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .fetch_all(&mut *conn)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            /// Loads, transitions and writes, inside the caller's transaction (which holds the
            /// merchant's lock).
            async fn rotate_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                command: $crate::store::StoredCommand,
                now: $crate::clock::Timestamp,
                revert_window: chrono::Duration,
            ) -> $crate::store::StoreResult<()> {
                use $crate::secrets::rotation::{apply, Slot};
                let rows = Self::secret_rows(&mut *conn, merchant, mode).await?;
                let state = $crate::store::rotation_state(&rows)?;
                let (pure, new_secret) = command.split(|secret| Slot { id: secret.id, created_at: secret.created_at });
                let transition = apply(&state, pure, now, revert_window)?;
                let next = transition.state;
                // Destroy first, then demote to previous, then promote to active, so the
                // one-per-state indexes never see two rows at once.
                for id in &transition.destroyed {
                    sqlx::query("DELETE FROM signing_secrets WHERE id = $1").bind(id.to_string()).execute(&mut *conn).await?;
                }
                if let Some(previous) = next.previous {
                    sqlx::query("UPDATE signing_secrets SET state = 'previous', revert_until = $2, complete_at = NULL WHERE id = $1")
                        .bind(previous.slot.id.to_string())
                        .bind($crate::clock::to_millis(previous.revert_until))
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query(
                    "UPDATE signing_secrets SET state = 'active', activated_at = COALESCE(activated_at, $2), \
                     revert_until = NULL, complete_at = NULL WHERE id = $1",
                )
                .bind(next.active.id.to_string())
                .bind($crate::clock::to_millis(now))
                .execute(&mut *conn)
                .await?;
                if let (Some(pending), Some(secret)) = (next.pending, new_secret) {
                    sqlx::query(
                        "INSERT INTO signing_secrets (id, merchant_id, mode, state, fingerprint, key_id, ciphertext, \
                         created_at, complete_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8)",
                    )
                    .bind(secret.id.to_string())
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .bind(&secret.fingerprint)
                    .bind(&secret.key_id)
                    .bind(&secret.ciphertext)
                    .bind($crate::clock::to_millis(secret.created_at))
                    .bind(pending.complete_at.map($crate::clock::to_millis))
                    .execute(&mut *conn)
                    .await
                    .map_err($crate::store::sql::conflict_on_unique("a pending secret already exists"))?;
                }
                // Senders cache decrypted secrets by this version.
                sqlx::query("UPDATE merchants SET secrets_version = secrets_version + 1 WHERE id = $1")
                    .bind(merchant.to_string())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn pairs(
                &self,
                sql: &str,
                at: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<Vec<($crate::ids::MerchantId, $crate::keys::Mode)>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as(sql).bind($crate::clock::to_millis(at)).fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|(merchant, mode)| {
                        Ok((
                            $crate::store::rows::parse_id(&merchant)?,
                            mode.parse().map_err($crate::store::StoreError::Corrupt)?,
                        ))
                    })
                    .collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SecretStore for $store {
            async fn signing_secrets(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SecretRecord>> {
                let mut conn = self.pool.acquire().await?;
                Self::secret_rows(&mut conn, merchant, mode).await
            }

            async fn rotate(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                command: $crate::store::StoredCommand,
                now: $crate::clock::Timestamp,
                revert_window: chrono::Duration,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SecretRecord>> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                Self::rotate_in(&mut tx, merchant, mode, command, now, revert_window).await?;
                self.append_audit(&mut tx, audit).await?;
                let rows = Self::secret_rows(&mut tx, merchant, mode).await?;
                tx.commit().await?;
                Ok(rows)
            }

            async fn due_completions(
                &self,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<Vec<($crate::ids::MerchantId, $crate::keys::Mode)>> {
                self.pairs(
                    "SELECT merchant_id, mode FROM signing_secrets WHERE state = 'pending' AND complete_at <= $1",
                    now,
                )
                .await
            }

            async fn expired_previous(
                &self,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<Vec<($crate::ids::MerchantId, $crate::keys::Mode)>> {
                self.pairs(
                    "SELECT merchant_id, mode FROM signing_secrets WHERE state = 'previous' AND revert_until < $1",
                    now,
                )
                .await
            }

            async fn secrets_sealed_with(
                &self,
                key_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::SecretRecord>> {
                let sql = format!(
                    "SELECT {} FROM signing_secrets WHERE key_id = $1 ORDER BY id",
                    $crate::store::sql::SECRET_COLUMNS
                );
                let rows: Vec<$crate::store::sql::SecretRow> =
                    sqlx::query_as(&sql).bind(key_id).fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn reseal_secret(
                &self,
                id: $crate::ids::SecretId,
                old_key_id: &str,
                new_key_id: &str,
                ciphertext: &[u8],
            ) -> $crate::store::StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE signing_secrets SET key_id = $3, ciphertext = $4 WHERE id = $1 AND key_id = $2",
                )
                .bind(id.to_string())
                .bind(old_key_id)
                .bind(new_key_id)
                .bind(ciphertext)
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() == 1)
            }
        }
    };
}

pub(super) use impl_secret_store;
