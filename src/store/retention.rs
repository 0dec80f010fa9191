//! Retention: removing what has aged out, in small batches, and what a pass would remove.
//!
//! Every method removes at most one batch in one short transaction, so the pruner can pause
//! between batches and the SQLite writer is never held long. The rules (which rows are old
//! enough) are `crate::delivery::retention`'s; the cutoffs come in as a record.
//!
//! Deliveries and events are scanned in primary-key order: ids are UUIDv7, so the oldest rows
//! come first and the scan is bounded by `scan_ids_before`; each batch continues after the
//! last id of the previous one. Rows that stay (pending work, a failed delivery still in its
//! window) are passed over once per pass. No index is added for pruning, so ingest and the
//! workers pay nothing for it.
//!
//! A delivery's attempts are deleted first, in the same transaction (on PostgreSQL the
//! deliveries picked are locked with `FOR UPDATE SKIP LOCKED`, so a concurrent replay of one
//! either waits and finds it gone or keeps it whole).

use async_trait::async_trait;

use super::{AuditCheckpoint, PruneBatch, PruneCounts, RetentionCutoffs, StoreResult};
use crate::clock::Timestamp;
use crate::ids::EndpointId;

/// Removing aged-out rows.
#[async_trait]
pub trait RetentionStore {
    /// What one pass at `cutoffs` would remove, by table (for `hooksign prune --dry-run`).
    async fn retention_preview(&self, cutoffs: &RetentionCutoffs) -> StoreResult<PruneCounts>;
    /// Finished deliveries past their window, with their attempts: at most `limit`, in id
    /// order after `after` (`None`: from the start).
    async fn prune_deliveries(
        &self,
        cutoffs: &RetentionCutoffs,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<PruneBatch>;
    /// Events past the window with no delivery left: at most `limit`, in id order after
    /// `after`.
    async fn prune_events(
        &self,
        cutoffs: &RetentionCutoffs,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<PruneBatch>;
    /// The oldest entries of one audit chain written before `cutoffs.audit_before` (at most
    /// `limit`, only a prefix of the chain), recording the chain's new checkpoint in the same
    /// transaction. Needs the audit key ([`Locked`](super::StoreError::Locked) without it).
    async fn prune_audit_chain(
        &self,
        chain: &str,
        cutoffs: &RetentionCutoffs,
        limit: u32,
    ) -> StoreResult<PruneBatch>;
    /// The checkpoint a pruned chain starts from.
    async fn audit_checkpoint(&self, chain: &str) -> StoreResult<Option<AuditCheckpoint>>;
    /// Endpoints deleted through the API whose history is still being removed.
    async fn deleted_endpoints(&self) -> StoreResult<Vec<EndpointId>>;
    /// Up to `limit` deliveries (with their attempts) of a deleted endpoint, none that is
    /// being sent at `now`; once none is left, the endpoint row itself.
    async fn purge_deleted_endpoint(
        &self,
        endpoint: EndpointId,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<PruneBatch>;
    /// SQLite: gives up to `pages` free pages back to the file system (`incremental_vacuum`)
    /// and returns how many free pages are left. PostgreSQL: nothing to do (autovacuum), 0.
    async fn reclaim_space(&self, pages: u32) -> StoreResult<u64>;
}

/// SQL: a delivery (bare table) that is finished and past its window; `$3` is the delivered
/// cutoff, `$4` the failed one (milliseconds).
pub(super) const FINISHED_AND_OLD: &str = "((status = 'delivered' AND updated_at < $3) \
     OR (status IN ('failed', 'expired') AND updated_at < $4))";

/// Implements [`RetentionStore`] for a store with a `pool`. `$lock` locks the rows a batch
/// picks (PostgreSQL) or is empty (SQLite: the transaction's first write takes the database
/// lock); `$freelist` and `$vacuum` are SQLite's space-reclaiming pragmas, empty elsewhere.
macro_rules! impl_retention_store {
    ($store:ty, $db:ty, $lock:literal, $freelist:literal, $vacuum:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::RetentionStore for $store {
            async fn retention_preview(
                &self,
                cutoffs: &$crate::store::RetentionCutoffs,
            ) -> $crate::store::StoreResult<$crate::store::PruneCounts> {
                use $crate::clock::to_millis;
                let scan = to_millis(cutoffs.scan_ids_before);
                let deliveries_scan = $crate::ids::DeliveryId::first_at(scan).to_string();
                let going = "((d.id < $1 AND ((d.status = 'delivered' AND d.updated_at < $2) \
                     OR (d.status IN ('failed', 'expired') AND d.updated_at < $3))) \
                     OR d.endpoint_id IN (SELECT id FROM endpoints WHERE deleted_at IS NOT NULL))";
                let with_deliveries = |sql: String| {
                    let scan = deliveries_scan.clone();
                    async move {
                        sqlx::query_scalar::<_, i64>(&sql)
                            .bind(scan)
                            .bind(to_millis(cutoffs.delivered_before))
                            .bind(to_millis(cutoffs.failed_before))
                            .fetch_one(&self.pool)
                            .await
                    }
                };
                let rows = |n: i64| u64::try_from(n).unwrap_or(0);
                let deliveries =
                    with_deliveries(format!("SELECT COUNT(*) FROM deliveries d WHERE {going}")).await?;
                let attempts = with_deliveries(format!(
                    "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE {going}"
                ))
                .await?;
                // Events with no delivery left once this pass has removed its deliveries.
                let events_sql = format!(
                    "SELECT COUNT(*) FROM events ev WHERE ev.id < $4 AND ev.created_at < $5 AND NOT EXISTS \
                     (SELECT 1 FROM deliveries d WHERE d.event_id = ev.id AND NOT {going})"
                );
                let events: i64 = sqlx::query_scalar(&events_sql)
                    .bind(deliveries_scan.clone())
                    .bind(to_millis(cutoffs.delivered_before))
                    .bind(to_millis(cutoffs.failed_before))
                    .bind($crate::ids::EventId::first_at(scan).to_string())
                    .bind(to_millis(cutoffs.events_before))
                    .fetch_one(&self.pool)
                    .await?;
                let audit: i64 = match cutoffs.audit_before {
                    // Each chain's prefix written before the cutoff.
                    Some(before) => sqlx::query_scalar(
                        "SELECT COUNT(*) FROM audit_events a WHERE a.created_at < $1 AND NOT EXISTS \
                         (SELECT 1 FROM audit_events b WHERE b.chain = a.chain AND b.seq < a.seq AND b.created_at >= $1)",
                    )
                    .bind(to_millis(before))
                    .fetch_one(&self.pool)
                    .await?,
                    None => 0,
                };
                let endpoints: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM endpoints WHERE deleted_at IS NOT NULL")
                        .fetch_one(&self.pool)
                        .await?;
                Ok($crate::store::PruneCounts {
                    deliveries: rows(deliveries),
                    delivery_attempts: rows(attempts),
                    events: rows(events),
                    audit_events: rows(audit),
                    endpoints: rows(endpoints),
                })
            }

            async fn prune_deliveries(
                &self,
                cutoffs: &$crate::store::RetentionCutoffs,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::store::StoreResult<$crate::store::PruneBatch> {
                use $crate::clock::to_millis;
                let pick = format!(
                    "SELECT id FROM deliveries WHERE id > $1 AND id < $2 AND {} ORDER BY id LIMIT $5 {}",
                    $crate::store::retention::FINISHED_AND_OLD,
                    $lock
                );
                let scan = $crate::ids::DeliveryId::first_at(to_millis(cutoffs.scan_ids_before)).to_string();
                let bind = |sql| {
                    sqlx::query(sql)
                        .bind(after.unwrap_or(""))
                        .bind(scan.clone())
                        .bind(to_millis(cutoffs.delivered_before))
                        .bind(to_millis(cutoffs.failed_before))
                        .bind(i64::from(limit))
                };
                let mut tx = self.pool.begin().await?;
                let attempts = format!("DELETE FROM delivery_attempts WHERE delivery_id IN ({pick})");
                let attempts = bind(&attempts).execute(&mut *tx).await?.rows_affected();
                let deliveries = format!("DELETE FROM deliveries WHERE id IN ({pick}) RETURNING id");
                let removed: Vec<String> = bind(&deliveries)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|row| sqlx::Row::get(row, 0))
                    .collect();
                tx.commit().await?;
                Ok($crate::store::PruneBatch {
                    counts: $crate::store::PruneCounts {
                        deliveries: removed.len() as u64,
                        delivery_attempts: attempts,
                        ..Default::default()
                    },
                    rows: removed.len() as u64,
                    last_id: removed.into_iter().max(),
                })
            }

            async fn prune_events(
                &self,
                cutoffs: &$crate::store::RetentionCutoffs,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::store::StoreResult<$crate::store::PruneBatch> {
                use $crate::clock::to_millis;
                let sql = format!(
                    "DELETE FROM events WHERE id IN (SELECT ev.id FROM events ev WHERE ev.id > $1 AND ev.id < $2 \
                     AND ev.created_at < $3 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = ev.id) \
                     ORDER BY ev.id LIMIT $4 {}) RETURNING id",
                    $lock
                );
                let scan = $crate::ids::EventId::first_at(to_millis(cutoffs.scan_ids_before)).to_string();
                let removed: Vec<String> = sqlx::query_scalar(&sql)
                    .bind(after.unwrap_or(""))
                    .bind(scan)
                    .bind(to_millis(cutoffs.events_before))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok($crate::store::PruneBatch {
                    counts: $crate::store::PruneCounts {
                        events: removed.len() as u64,
                        ..Default::default()
                    },
                    rows: removed.len() as u64,
                    last_id: removed.into_iter().max(),
                })
            }

            async fn prune_audit_chain(
                &self,
                chain: &str,
                cutoffs: &$crate::store::RetentionCutoffs,
                limit: u32,
            ) -> $crate::store::StoreResult<$crate::store::PruneBatch> {
                use $crate::clock::{from_millis, to_millis};
                let Some(before) = cutoffs.audit_before else {
                    return Ok(Default::default());
                };
                // Most runs find nothing old enough: look before taking the chain's lock.
                let oldest: Option<i64> = sqlx::query_scalar(
                    "SELECT created_at FROM audit_events WHERE chain = $1 ORDER BY seq LIMIT 1",
                )
                .bind(chain)
                .fetch_optional(&self.pool)
                .await?;
                if !oldest.is_some_and(|at| at < to_millis(before)) {
                    return Ok(Default::default());
                }
                let key = self.sealing()?.audit.clone();
                let mut tx = self.pool.begin().await?;
                // Bumping the head row serialises with appends to this chain (the row lock on
                // PostgreSQL, the write lock on SQLite), as re-chaining does.
                sqlx::query("UPDATE audit_heads SET seq = seq WHERE chain = $1")
                    .bind(chain)
                    .execute(&mut *tx)
                    .await?;
                let start: Option<i64> =
                    sqlx::query_scalar("SELECT seq FROM audit_checkpoints WHERE chain = $1")
                        .bind(chain)
                        .fetch_optional(&mut *tx)
                        .await?;
                let entries: Vec<(i64, String, i64)> = sqlx::query_as(
                    "SELECT seq, hash, created_at FROM audit_events WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(chain)
                .bind(start.unwrap_or(0))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                let times: Vec<_> = entries.iter().map(|(_, _, at)| from_millis(*at)).collect();
                let prefix = $crate::delivery::retention::audit_prefix_to_prune(&times, cutoffs);
                let Some((seq, hash, _)) = prefix.checked_sub(1).map(|last| &entries[last]) else {
                    return Ok(Default::default());
                };
                let mac = $crate::audit::checkpoint_mac(&key, chain, *seq, hash);
                sqlx::query(
                    "INSERT INTO audit_checkpoints (chain, seq, hash, mac) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
                )
                .bind(chain)
                .bind(*seq)
                .bind(hash)
                .bind(mac)
                .execute(&mut *tx)
                .await?;
                let removed = sqlx::query("DELETE FROM audit_events WHERE chain = $1 AND seq <= $2")
                    .bind(chain)
                    .bind(*seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok($crate::store::PruneBatch {
                    counts: $crate::store::PruneCounts {
                        audit_events: removed,
                        ..Default::default()
                    },
                    rows: prefix as u64,
                    last_id: Some(seq.to_string()),
                })
            }

            async fn audit_checkpoint(
                &self,
                chain: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::AuditCheckpoint>> {
                let row: Option<(String, i64, String, String)> = sqlx::query_as(
                    "SELECT chain, seq, hash, mac FROM audit_checkpoints WHERE chain = $1",
                )
                .bind(chain)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(chain, seq, hash, mac)| $crate::store::AuditCheckpoint { chain, seq, hash, mac }))
            }

            async fn deleted_endpoints(&self) -> $crate::store::StoreResult<Vec<$crate::ids::EndpointId>> {
                let ids: Vec<String> =
                    sqlx::query_scalar("SELECT id FROM endpoints WHERE deleted_at IS NOT NULL ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?;
                ids.iter().map(|id| $crate::store::rows::parse_id(id)).collect()
            }

            async fn purge_deleted_endpoint(
                &self,
                endpoint: $crate::ids::EndpointId,
                now: $crate::clock::Timestamp,
                limit: u32,
            ) -> $crate::store::StoreResult<$crate::store::PruneBatch> {
                let pick = format!(
                    "SELECT id FROM deliveries WHERE endpoint_id = $1 AND {} ORDER BY id LIMIT $3 {}",
                    $crate::store::deliveries::idle_condition("$2"),
                    $lock
                );
                let bind = |sql| {
                    sqlx::query(sql)
                        .bind(endpoint.to_string())
                        .bind($crate::clock::to_millis(now))
                        .bind(i64::from(limit))
                };
                let mut tx = self.pool.begin().await?;
                let attempts = format!("DELETE FROM delivery_attempts WHERE delivery_id IN ({pick})");
                let attempts = bind(&attempts).execute(&mut *tx).await?.rows_affected();
                let deliveries = format!("DELETE FROM deliveries WHERE id IN ({pick})");
                let deliveries = bind(&deliveries).execute(&mut *tx).await?.rows_affected();
                let mut endpoints = 0;
                if deliveries < u64::from(limit) {
                    // The last ones went (or are in flight: then the row stays for a later pass).
                    endpoints = sqlx::query(
                        "DELETE FROM endpoints WHERE id = $1 AND deleted_at IS NOT NULL \
                         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE endpoint_id = $1)",
                    )
                    .bind(endpoint.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                Ok($crate::store::PruneBatch {
                    counts: $crate::store::PruneCounts {
                        deliveries,
                        delivery_attempts: attempts,
                        endpoints,
                        ..Default::default()
                    },
                    rows: deliveries,
                    last_id: None,
                })
            }

            async fn reclaim_space(&self, pages: u32) -> $crate::store::StoreResult<u64> {
                if $vacuum.is_empty() {
                    return Ok(0);
                }
                let free: i64 = sqlx::query_scalar($freelist).fetch_one(&self.pool).await?;
                if free == 0 {
                    return Ok(0);
                }
                let mut conn = self.pool.acquire().await?;
                sqlx::query(&format!("{}({pages})", $vacuum)).execute(&mut *conn).await?;
                let left: i64 = sqlx::query_scalar($freelist).fetch_one(&mut *conn).await?;
                Ok(u64::try_from(left).unwrap_or(0))
            }
        }
    };
}

pub(super) use impl_retention_store;
