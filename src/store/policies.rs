//! Scheduled rotation: the policy (a cron expression and a grace period) of a merchant and
//! mode, and firing it, which initiates a rotation through the same transition as an admin's
//! (see `secrets.rs`) in the transaction that moves the policy's next fire time.
//!
//! Uses the shared SQL helpers of `sql.rs` and the rotation of `secrets.rs`; the schedule itself
//! (`secrets::scheduler`) is a service above the store.

use async_trait::async_trait;
use chrono::Duration;

use super::{NewAuditEvent, NewSecret, PolicyRecord, StoreError, StoreResult};
use crate::clock::Timestamp;
use crate::ids::MerchantId;
use crate::keys::Mode;

/// Scheduled-rotation policies.
#[async_trait]
pub trait PolicyStore {
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
}

pub(super) const POLICY_COLUMNS: &str = "merchant_id, mode, cron, grace_secs, next_fire_at";

#[derive(sqlx::FromRow)]
pub(super) struct PolicyRow {
    merchant_id: String,
    mode: String,
    cron: String,
    grace_secs: i64,
    next_fire_at: i64,
}

impl TryFrom<PolicyRow> for PolicyRecord {
    type Error = StoreError;

    fn try_from(row: PolicyRow) -> Result<Self, StoreError> {
        Ok(PolicyRecord {
            merchant_id: super::rows::parse_id(&row.merchant_id)?,
            mode: row.mode.parse().map_err(StoreError::Corrupt)?,
            cron: row.cron,
            grace_secs: row.grace_secs,
            next_fire_at: crate::clock::from_millis(row.next_fire_at),
        })
    }
}

/// Implements [`PolicyStore`] for a store type with a `pool` field (and the rotation of
/// `impl_secret_store`).
macro_rules! impl_policy_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::PolicyStore for $store {
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
                let sql = format!(
                    "SELECT {} FROM rotation_policies WHERE merchant_id = $1 AND mode = $2",
                    $crate::store::policies::POLICY_COLUMNS
                );
                let row: Option<$crate::store::policies::PolicyRow> = sqlx::query_as(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn due_policies(
                &self,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PolicyRecord>> {
                let sql = format!(
                    "SELECT {} FROM rotation_policies WHERE next_fire_at <= $1",
                    $crate::store::policies::POLICY_COLUMNS
                );
                let rows: Vec<$crate::store::policies::PolicyRow> =
                    sqlx::query_as(&sql).bind($crate::clock::to_millis(now)).fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
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
        }
    };
}

pub(super) use impl_policy_store;
