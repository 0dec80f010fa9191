//! Sending again by hand: retrying one delivery and replaying an endpoint's deliveries. A
//! delivery in flight (leased, its lease not run out) is never re-queued, since that would
//! have it sent twice at once.
//!
//! Uses the lease condition of `deliveries.rs` and the shared SQL helpers of `sql.rs`.

use async_trait::async_trait;

use super::{DeliveryRecord, DeliveryStatus, NewAuditEvent, Replayed, StoreResult};
use crate::clock::Timestamp;
use crate::ids::{DeliveryId, EndpointId, MerchantId};
use crate::keys::Mode;

/// Retries and replays.
#[async_trait]
pub trait ReplayStore {
    /// Makes a delivery due now again and records `audit`, in one transaction. A delivery in
    /// flight (leased, its lease not run out) is left alone: `Conflict(DELIVERY_IN_FLIGHT)`,
    /// since re-queueing it would have it sent twice at once.
    async fn retry_delivery(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: DeliveryId,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<DeliveryRecord>;
    /// Makes an endpoint's deliveries in `statuses` created in [since, until) due now again,
    /// skipping those in flight, and records `audit` (its details completed with both counts)
    /// in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn replay_endpoint(
        &self,
        merchant: MerchantId,
        mode: Mode,
        endpoint: EndpointId,
        statuses: &[DeliveryStatus],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<Replayed>;
}

/// Implements [`ReplayStore`] for a store with a `pool` field.
macro_rules! impl_replay_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ReplayStore for $store {
            async fn retry_delivery(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::DeliveryId,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::DeliveryRecord> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                let updated = sqlx::query(&format!(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $4, lease_until = NULL, leased_by = NULL, \
                     updated_at = $4 WHERE id = $1 AND merchant_id = $2 AND mode = $3 AND {}",
                    $crate::store::deliveries::idle_condition("$4")
                ))
                .bind(id.to_string())
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .bind($crate::clock::to_millis(now))
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    // Either not this merchant's (or no such delivery), or being sent now.
                    Self::delivery_in(&mut tx, merchant, mode, id).await?;
                    return Err($crate::store::StoreError::Conflict(
                        $crate::store::deliveries::DELIVERY_IN_FLIGHT,
                    ));
                }
                let record = Self::delivery_in(&mut tx, merchant, mode, id).await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(record)
            }

            async fn replay_endpoint(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                endpoint: $crate::ids::EndpointId,
                statuses: &[$crate::store::DeliveryStatus],
                since: Option<$crate::clock::Timestamp>,
                until: Option<$crate::clock::Timestamp>,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::Replayed> {
                let mut replayed = $crate::store::Replayed::default();
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                let matching = "merchant_id = $1 AND mode = $2 AND endpoint_id = $3 AND status = $5 \
                                AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7)";
                // Pending first: the later passes turn rows into `pending`, and the pending
                // pass must not find (and count) them again.
                let mut statuses = statuses.to_vec();
                statuses.sort_by_key(|status| (*status != $crate::store::DeliveryStatus::Pending, status.as_str()));
                statuses.dedup();
                for status in &statuses {
                    let bind = |sql| {
                        sqlx::query(sql)
                            .bind(merchant.to_string())
                            .bind(mode.as_str())
                            .bind(endpoint.to_string())
                            .bind($crate::clock::to_millis(now))
                            .bind(status.as_str())
                            .bind(since.map($crate::clock::to_millis))
                            .bind(until.map($crate::clock::to_millis))
                    };
                    let idle = $crate::store::deliveries::idle_condition("$4");
                    let count = format!("SELECT COUNT(*) FROM deliveries WHERE {matching} AND NOT {idle}");
                    let in_flight: i64 = sqlx::Row::get(&bind(&count).fetch_one(&mut *tx).await?, 0);
                    let requeue = format!(
                        "UPDATE deliveries SET status = 'pending', next_attempt_at = $4, lease_until = NULL, \
                         leased_by = NULL, updated_at = $4 WHERE {matching} AND {idle}"
                    );
                    let updated = bind(&requeue).execute(&mut *tx).await?;
                    replayed.requeued += updated.rows_affected();
                    replayed.skipped_in_flight += u64::try_from(in_flight).unwrap_or(0);
                }
                let mut audit = audit.clone();
                if let serde_json::Value::Object(details) = &mut audit.details {
                    details.insert("requeued".into(), replayed.requeued.into());
                    details.insert("skipped_in_flight".into(), replayed.skipped_in_flight.into());
                }
                self.append_audit(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(replayed)
            }
        }
    };
}

pub(super) use impl_replay_store;
