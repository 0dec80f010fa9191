//! The work queue: claiming due deliveries in batches under a lease (on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so many daemons share one queue), giving claims back, and the
//! queue's depth. A lease that runs out is claimed again (at-least-once delivery).
//!
//! Uses the endpoint rows of `endpoints.rs` and the shared SQL helpers of `sql.rs`.

use async_trait::async_trait;

use super::endpoints::EndpointRow;
use super::{ClaimedDelivery, StoreResult};
use crate::clock::Timestamp;
use crate::ids::{DeliveryId, EndpointId};

/// The delivery engine's queue.
#[async_trait]
pub trait QueueStore {
    /// Claims up to `limit` due deliveries under the claim `lease` (unique per batch, prefixed
    /// by the worker's id and `/`) until `lease_until`, skipping the endpoints in `busy` (the
    /// ones this daemon cannot send more to right now).
    async fn claim_due(
        &self,
        lease: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        busy: &[EndpointId],
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Gives claimed deliveries back unattempted, due again at `due_at`.
    async fn release_claims(
        &self,
        lease: &str,
        ids: &[DeliveryId],
        due_at: Timestamp,
    ) -> StoreResult<()>;
    /// Gives back every lease a worker holds (at shutdown).
    async fn release_worker(&self, worker: &str) -> StoreResult<u64>;
    /// Pending deliveries and the due time of the oldest, for metrics.
    async fn queue_stats(&self) -> StoreResult<(i64, Option<Timestamp>)>;
    /// The very text [`claim_due`](Self::claim_due) runs with `busy` endpoints skipped (`$1`
    /// the lease's end, `$2` the lease, `$3` now, `$4` the limit, `$5`… the busy endpoints),
    /// for tests that read its plan.
    fn claim_statement(&self, busy: usize) -> String;
}

/// The claim: due, idle deliveries of enabled endpoints and merchants, oldest due first. Paused
/// deliveries are not in the partial due index (`status = 'pending'`) it reads, so it never
/// passes over them; the endpoint and merchant conditions stay for the few a pause has not
/// reached yet. `index` names the index to read where the dialect can (SQLite's planner,
/// without statistics, would otherwise take `deliveries_unsent`'s `status = ?`
/// and sort the whole queue); `lock` is the row-locking clause of the subquery.
pub(super) fn claim_sql(index: &str, lock: &str, busy: usize) -> String {
    let skip = if busy == 0 {
        String::new()
    } else {
        let params: Vec<String> = (0..busy).map(|n| format!("${}", n + 5)).collect();
        format!("AND d.endpoint_id NOT IN ({}) ", params.join(", "))
    };
    format!(
        "UPDATE deliveries SET lease_until = $1, leased_by = $2 WHERE id IN (\
         SELECT d.id FROM deliveries d {index} JOIN endpoints e ON e.id = d.endpoint_id \
         JOIN merchants m ON m.id = d.merchant_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
         AND (d.lease_until IS NULL OR d.lease_until < $3) AND e.enabled = TRUE AND m.disabled = FALSE \
         {skip}ORDER BY d.next_attempt_at LIMIT $4 {lock}) RETURNING id"
    )
}

#[derive(sqlx::FromRow)]
pub(super) struct ClaimRow {
    #[sqlx(flatten)]
    endpoint: EndpointRow,
    delivery_id: String,
    leased_by: String,
    event_id: String,
    event_type: String,
    body: Vec<u8>,
    attempts: i64,
    secrets_version: i64,
}

impl ClaimRow {
    /// The claimed delivery, with its endpoint's headers opened by `encryptor`.
    pub(super) fn into_claimed(
        self,
        encryptor: &crate::secrets::Encryptor,
    ) -> Result<ClaimedDelivery, super::StoreError> {
        use super::rows::parse_id;
        let row = self;
        Ok(ClaimedDelivery {
            id: parse_id(&row.delivery_id)?,
            lease: row.leased_by,
            event_id: parse_id(&row.event_id)?,
            event_type: row.event_type,
            body: row.body,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            endpoint: row.endpoint.into_record(encryptor)?,
            secrets_version: row.secrets_version,
        })
    }
}

/// Implements [`QueueStore`]; `$lock` is the row-locking clause of the claim subquery
/// (`FOR UPDATE OF d SKIP LOCKED` on PostgreSQL, nothing on SQLite, whose writes are serial)
/// and `$index` its index hint (SQLite's `INDEXED BY deliveries_due`; PostgreSQL has none).
macro_rules! impl_queue_store {
    ($store:ty, $db:ty, $lock:literal, $index:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::QueueStore for $store {
            async fn claim_due(
                &self,
                worker: &str,
                now: $crate::clock::Timestamp,
                lease_until: $crate::clock::Timestamp,
                limit: u32,
                busy: &[$crate::ids::EndpointId],
            ) -> $crate::store::StoreResult<Vec<$crate::store::ClaimedDelivery>> {
                let now = $crate::clock::to_millis(now);
                let lease = $crate::clock::to_millis(lease_until);
                let claim = $crate::store::queue::claim_sql($index, $lock, busy.len());
                // Its text varies with the busy list: only the plain form is worth keeping prepared
                // (the varying ones would push hot statements out of the connection's cache).
                let mut query = sqlx::query_scalar(&claim)
                    .persistent(busy.is_empty())
                    .bind(lease)
                    .bind(worker)
                    .bind(now)
                    .bind(i64::from(limit));
                for endpoint in busy {
                    query = query.bind(endpoint.to_string());
                }
                let claimed: Vec<String> = query.fetch_all(&self.pool).await?;
                if claimed.is_empty() {
                    return Ok(Vec::new());
                }
                // The batch is read back by primary key (and still only while it is ours).
                let mut details = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {}, d.id AS delivery_id, d.leased_by, d.event_id, ev.type AS event_type, ev.body, d.attempts, \
                     m.secrets_version FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id \
                     JOIN events ev ON ev.id = d.event_id JOIN merchants m ON m.id = d.merchant_id \
                     WHERE d.status = 'pending' AND d.leased_by = ",
                    $crate::store::endpoints::ENDPOINT_COLUMNS
                ));
                details.push_bind(worker).push(" AND d.id IN (");
                let mut ids = details.separated(", ");
                for id in &claimed {
                    ids.push_bind(id.as_str());
                }
                details.push(") ORDER BY d.next_attempt_at");
                let rows: Vec<$crate::store::queue::ClaimRow> =
                    details.build_query_as().persistent(false).fetch_all(&self.pool).await?;
                let encryptor = &self.sealing()?.encryptor;
                rows.into_iter().map(|row| row.into_claimed(encryptor)).collect()
            }

            async fn release_claims(
                &self,
                worker: &str,
                ids: &[$crate::ids::DeliveryId],
                due_at: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for id in ids {
                    sqlx::query(
                        "UPDATE deliveries SET lease_until = NULL, leased_by = NULL, next_attempt_at = $3 \
                         WHERE id = $1 AND leased_by = $2",
                    )
                    .bind(id.to_string())
                    .bind(worker)
                    .bind($crate::clock::to_millis(due_at))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn release_worker(&self, worker: &str) -> $crate::store::StoreResult<u64> {
                let released = sqlx::query(
                    "UPDATE deliveries SET lease_until = NULL, leased_by = NULL WHERE leased_by LIKE $1 \
                     AND (status = 'pending' OR status = 'paused')",
                )
                .bind(format!("{worker}/%"))
                .execute(&self.pool)
                .await?;
                Ok(released.rows_affected())
            }

            fn claim_statement(&self, busy: usize) -> String {
                $crate::store::queue::claim_sql($index, $lock, busy)
            }

            async fn queue_stats(&self) -> $crate::store::StoreResult<(i64, Option<$crate::clock::Timestamp>)> {
                let (depth, oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok((depth, oldest.map($crate::clock::from_millis)))
            }
        }
    };
}

pub(super) use impl_queue_store;
