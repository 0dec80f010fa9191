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
use crate::secrets::rotation::{Pending, Previous, RotationError, RotationState, Slot};

/// A rotation command as the store receives it: initiation carries the sealed new secret.
#[derive(Debug, Clone)]
pub enum StoredCommand {
    Initiate {
        secret: NewSecret,
        complete_at: Option<Timestamp>,
    },
    Complete,
    CompleteDue,
    Revert,
    Cancel,
    Sweep,
}

/// A scheduled-rotation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub merchant_id: MerchantId,
    pub mode: Mode,
    pub cron: String,
    pub grace_secs: i64,
    pub next_fire_at: Timestamp,
}

/// Signing secrets, rotation and scheduled-rotation policies.
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

    /// Creates or replaces the policy of a merchant and mode.
    async fn put_policy(
        &self,
        policy: &PolicyRecord,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Removes a policy; `false` when there was none.
    async fn delete_policy(
        &self,
        merchant: MerchantId,
        mode: Mode,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

    /// The policy of a merchant and mode.
    async fn get_policy(
        &self,
        merchant: MerchantId,
        mode: Mode,
    ) -> StoreResult<Option<PolicyRecord>>;

    /// Policies whose next fire time has come.
    async fn due_policies(&self, now: Timestamp) -> StoreResult<Vec<PolicyRecord>>;

    /// Fires a due policy: moves `next_fire_at` from `fired` to `next` (only if nobody else
    /// did) and initiates a rotation completing at `complete_at`. `Ok(false)` when another
    /// instance fired it first or a rotation is already in progress.
    #[allow(clippy::too_many_arguments)]
    async fn fire_policy(
        &self,
        policy: &PolicyRecord,
        next: Timestamp,
        secret: NewSecret,
        complete_at: Timestamp,
        now: Timestamp,
        revert_window: Duration,
        audit: &NewAuditEvent,
    ) -> StoreResult<bool>;

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

impl From<RotationError> for super::StoreError {
    fn from(err: RotationError) -> Self {
        super::StoreError::Rotation(err)
    }
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
                use $crate::secrets::rotation::{apply, Command, Slot};
                use $crate::store::StoredCommand;
                let rows = Self::secret_rows(&mut *conn, merchant, mode).await?;
                let state = $crate::store::rotation_state(&rows)?;
                let (pure, new_secret) = match command {
                    StoredCommand::Initiate { secret, complete_at } => (
                        Command::Initiate { new: Slot { id: secret.id, created_at: secret.created_at }, complete_at },
                        Some(secret),
                    ),
                    StoredCommand::Complete => (Command::Complete, None),
                    StoredCommand::CompleteDue => (Command::CompleteDue, None),
                    StoredCommand::Revert => (Command::Revert, None),
                    StoredCommand::Cancel => (Command::Cancel, None),
                    StoredCommand::Sweep => (Command::Sweep, None),
                };
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
                            $crate::store::records::parse_id(&merchant)?,
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

            async fn put_policy(
                &self,
                policy: &$crate::store::PolicyRecord,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, policy.merchant_id).await?;
                sqlx::query(
                    "INSERT INTO rotation_policies (merchant_id, mode, cron, grace_secs, next_fire_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, mode) DO UPDATE SET \
                     cron = excluded.cron, grace_secs = excluded.grace_secs, next_fire_at = excluded.next_fire_at",
                )
                .bind(policy.merchant_id.to_string())
                .bind(policy.mode.as_str())
                .bind(&policy.cron)
                .bind(policy.grace_secs)
                .bind($crate::clock::to_millis(policy.next_fire_at))
                .bind($crate::clock::to_millis(now))
                .execute(&mut *tx)
                .await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_policy(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                let deleted = sqlx::query("DELETE FROM rotation_policies WHERE merchant_id = $1 AND mode = $2")
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Ok(false);
                }
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn get_policy(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
            ) -> $crate::store::StoreResult<Option<$crate::store::PolicyRecord>> {
                let row: Option<(String, i64, i64)> = sqlx::query_as(
                    "SELECT cron, grace_secs, next_fire_at FROM rotation_policies WHERE merchant_id = $1 AND mode = $2",
                )
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(cron, grace_secs, next)| $crate::store::PolicyRecord {
                    merchant_id: merchant,
                    mode,
                    cron,
                    grace_secs,
                    next_fire_at: $crate::clock::from_millis(next),
                }))
            }

            async fn due_policies(
                &self,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PolicyRecord>> {
                let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
                    "SELECT merchant_id, mode, cron, grace_secs, next_fire_at FROM rotation_policies \
                     WHERE next_fire_at <= $1",
                )
                .bind($crate::clock::to_millis(now))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(merchant, mode, cron, grace_secs, next)| {
                        Ok($crate::store::PolicyRecord {
                            merchant_id: $crate::store::records::parse_id(&merchant)?,
                            mode: mode.parse().map_err($crate::store::StoreError::Corrupt)?,
                            cron,
                            grace_secs,
                            next_fire_at: $crate::clock::from_millis(next),
                        })
                    })
                    .collect()
            }

            async fn fire_policy(
                &self,
                policy: &$crate::store::PolicyRecord,
                next: $crate::clock::Timestamp,
                secret: $crate::store::NewSecret,
                complete_at: $crate::clock::Timestamp,
                now: $crate::clock::Timestamp,
                revert_window: chrono::Duration,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, policy.merchant_id).await?;
                let claimed = sqlx::query(
                    "UPDATE rotation_policies SET next_fire_at = $4 \
                     WHERE merchant_id = $1 AND mode = $2 AND next_fire_at = $3",
                )
                .bind(policy.merchant_id.to_string())
                .bind(policy.mode.as_str())
                .bind($crate::clock::to_millis(policy.next_fire_at))
                .bind($crate::clock::to_millis(next))
                .execute(&mut *tx)
                .await?;
                if claimed.rows_affected() == 0 {
                    return Ok(false);
                }
                let command = $crate::store::StoredCommand::Initiate { secret, complete_at: Some(complete_at) };
                match Self::rotate_in(&mut tx, policy.merchant_id, policy.mode, command, now, revert_window).await {
                    Ok(()) => {
                        self.append_audit(&mut tx, audit).await?;
                        tx.commit().await?;
                        Ok(true)
                    }
                    Err($crate::store::StoreError::Rotation(_)) => {
                        // A rotation is already under way: skip this fire, keep the schedule.
                        tx.commit().await?;
                        Ok(false)
                    }
                    Err(other) => Err(other),
                }
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
