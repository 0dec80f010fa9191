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
    /// Makes a delivery due now again (paused while its endpoint or merchant is disabled) and
    /// records `audit`, in one transaction. A delivery in
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
    /// Makes an endpoint's deliveries in `statuses` created in [since, until) due now again
    /// (paused while the endpoint or its merchant is disabled), skipping those in flight; with
    /// `since`, also creates a delivery for each event of the merchant and mode created in the
    /// window that the endpoint's filter accepts and that has none to it yet (a window of more
    /// than [`MAX_BACKFILL_EVENTS`] events: `Conflict(BACKFILL_TOO_LARGE)`, nothing changed);
    /// and records `audit` (its details completed with the three counts) in the same
    /// transaction.
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

/// The most events a backfill window may hold (`POST /v1/endpoints/{id}/replay` with
/// `since`): the whole backfill is one transaction under the merchant's lock, so its size is
/// bounded up front rather than split into batches another request could interleave with.
pub const MAX_BACKFILL_EVENTS: u32 = 10_000;

/// The [`StoreError::Conflict`](super::StoreError::Conflict) of a backfill window holding more
/// than [`MAX_BACKFILL_EVENTS`] events; nothing was changed.
pub const BACKFILL_TOO_LARGE: &str = "backfill_too_large";

/// SQL: the status a delivery of endpoint `endpoint` (an expression) is queued again in:
/// `pending`, or `paused` while the endpoint or its merchant is disabled (see `paused.rs`).
pub(super) fn requeued_status(endpoint: &str) -> String {
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM endpoints e JOIN merchants m ON m.id = e.merchant_id \
         WHERE e.id = {endpoint} AND e.enabled = TRUE AND m.disabled = FALSE) THEN 'pending' ELSE 'paused' END"
    )
}

/// Implements [`ReplayStore`] for a store with a `pool` field.
macro_rules! impl_replay_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// The events of a merchant and mode created in [since, until) that have no delivery
            /// to `endpoint`, oldest first, as (id, type); `Conflict(BACKFILL_TOO_LARGE)` when
            /// the window holds more than `MAX_BACKFILL_EVENTS` events (read through
            /// `events_by_time`, at most that many plus one).
            async fn backfill_candidates(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                endpoint: $crate::ids::EndpointId,
                since: $crate::clock::Timestamp,
                until: Option<$crate::clock::Timestamp>,
            ) -> $crate::store::StoreResult<Vec<(String, String)>> {
                let max = $crate::store::replay::MAX_BACKFILL_EVENTS;
                let window = "ev.merchant_id = $1 AND ev.mode = $2 AND ev.created_at >= $3 \
                              AND ($4 IS NULL OR ev.created_at < $4)";
                let in_window: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM events ev WHERE {window} LIMIT $5) w"
                ))
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .bind($crate::clock::to_millis(since))
                .bind(until.map($crate::clock::to_millis))
                .bind(i64::from(max) + 1)
                .fetch_one(&mut *conn)
                .await?;
                if in_window > i64::from(max) {
                    return Err($crate::store::StoreError::Conflict($crate::store::replay::BACKFILL_TOO_LARGE));
                }
                let candidates = sqlx::query_as(&format!(
                    "SELECT ev.id, ev.type FROM events ev WHERE {window} AND NOT EXISTS \
                     (SELECT 1 FROM deliveries d WHERE d.event_id = ev.id AND d.endpoint_id = $5) \
                     ORDER BY ev.created_at, ev.id"
                ))
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .bind($crate::clock::to_millis(since))
                .bind(until.map($crate::clock::to_millis))
                .bind(endpoint.to_string())
                .fetch_all(&mut *conn)
                .await?;
                Ok(candidates)
            }

            /// Creates a delivery to `endpoint` for each candidate event its filter accepts,
            /// due now (paused while the endpoint or its merchant is disabled). Returns how many.
            async fn backfill(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                endpoint: $crate::ids::EndpointId,
                candidates: Vec<(String, String)>,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<u64> {
                let (types, sendable): (String, bool) = sqlx::query_as(
                    "SELECT e.event_types, (e.enabled = TRUE AND m.disabled = FALSE) FROM endpoints e \
                     JOIN merchants m ON m.id = e.merchant_id WHERE e.id = $1",
                )
                .bind(endpoint.to_string())
                .fetch_one(&mut *conn)
                .await?;
                let filter: Vec<String> = types.split_whitespace().map(str::to_owned).collect();
                let events: Vec<String> = candidates
                    .into_iter()
                    .filter(|(_, event_type)| $crate::delivery::filter::accepts(&filter, event_type))
                    .map(|(id, _)| id)
                    .collect();
                let status = if sendable { "pending" } else { "paused" };
                let now = $crate::clock::to_millis(now);
                for chunk in events.chunks($crate::store::sql::ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, \
                         next_attempt_at, created_at, updated_at) ",
                    );
                    insert.push_values(chunk, |mut row, event| {
                        row.push_bind($crate::ids::DeliveryId::new().to_string())
                            .push_bind(event.clone())
                            .push_bind(endpoint.to_string())
                            .push_bind(merchant.to_string())
                            .push_bind(mode.as_str())
                            .push_bind(status)
                            .push_bind(0_i64)
                            .push_bind(now)
                            .push_bind(now)
                            .push_bind(now);
                    });
                    insert.build().persistent(false).execute(&mut *conn).await?;
                }
                Ok(events.len() as u64)
            }
        }

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
                    "UPDATE deliveries SET status = {}, next_attempt_at = $4, lease_until = NULL, leased_by = NULL, \
                     updated_at = $4 WHERE id = $1 AND merchant_id = $2 AND mode = $3 AND {}",
                    $crate::store::replay::requeued_status("deliveries.endpoint_id"),
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
                // The window is measured before anything changes: one too large is refused
                // whole.
                let backfill = match since {
                    Some(since) => Some(Self::backfill_candidates(&mut tx, merchant, mode, endpoint, since, until).await?),
                    None => None,
                };
                let matching = "merchant_id = $1 AND mode = $2 AND endpoint_id = $3 AND status = $5 \
                                AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7)";
                // Pending and paused first: the later passes turn rows into one of those, and
                // their passes must not find (and count) them again.
                let mut statuses = statuses.to_vec();
                statuses.sort_by_key(|status| {
                    use $crate::store::DeliveryStatus::{Paused, Pending};
                    (!matches!(status, Pending | Paused), status.as_str())
                });
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
                        "UPDATE deliveries SET status = {}, next_attempt_at = $4, lease_until = NULL, \
                         leased_by = NULL, updated_at = $4 WHERE {matching} AND {idle}",
                        $crate::store::replay::requeued_status("$3")
                    );
                    let updated = bind(&requeue).execute(&mut *tx).await?;
                    replayed.requeued += updated.rows_affected();
                    replayed.skipped_in_flight += u64::try_from(in_flight).unwrap_or(0);
                }
                if let Some(candidates) = backfill {
                    replayed.backfilled = self.backfill(&mut tx, merchant, mode, endpoint, candidates, now).await?;
                }
                let mut audit = audit.clone();
                if let serde_json::Value::Object(details) = &mut audit.details {
                    details.insert("requeued".into(), replayed.requeued.into());
                    details.insert("skipped_in_flight".into(), replayed.skipped_in_flight.into());
                    details.insert("backfilled".into(), replayed.backfilled.into());
                }
                self.append_audit(&mut tx, &audit).await?;
                tx.commit().await?;
                Ok(replayed)
            }
        }
    };
}

pub(super) use impl_replay_store;
