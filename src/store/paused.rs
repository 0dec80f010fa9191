//! Deliveries that cannot be sent now. While its endpoint or its merchant is disabled a
//! delivery is `paused`: out of the due index, so the claim never passes over it; re-enabling
//! makes it `pending` again (due now, or at its old time if that is later). A delivery still
//! pending or paused `delivery.max_age_secs` after it was created becomes `expired`, the reason
//! in `last_error`, by a periodic sweep.
//!
//! Pausing and resuming happen in transactions of [`SETTLE_BATCH`] rows: the first one in the
//! transaction that disables or re-enables (so the endpoint is never seen disabled with its
//! work still queued, as far as that batch goes), the rest right after it, each under the
//! merchant's lock and guarded by the endpoint's state *now*, so a re-enable racing a pause
//! (or the reverse) converges on the state that won. A delivery in flight when its endpoint is
//! paused keeps its lease: its outcome is still recorded by the attempt's holder, and a retry
//! it asks for keeps it `paused` (see `outcomes.rs`). The sweep also finishes what an
//! interrupted pause or resume left (a crash between batches, or on PostgreSQL an event
//! ingested while its endpoint was being disabled).
//!
//! Index (migration 0009): `deliveries_unsent (status, endpoint_id, created_at)` on PostgreSQL,
//! `(endpoint_id, status, created_at)` on SQLite (see the migration for why), only over
//! pending and paused rows, so neither pausing, resuming nor the sweep reads the delivered
//! history. The sweep skips through it one endpoint at a time and, per endpoint, reads only
//! the rows past the age.

use async_trait::async_trait;

use super::{StoreResult, Swept};
use crate::clock::Timestamp;
use crate::ids::EndpointId;

/// Deliveries paused or resumed per transaction. 2,000 keeps each transaction well under
/// 100 ms on SQLite (the writer is never held for long), and a 100,000-row pause at about
/// 50 transactions.
pub const SETTLE_BATCH: u32 = 2_000;

/// Deliveries expired per transaction.
pub const EXPIRE_BATCH: u32 = 1_000;

/// Paused and expired deliveries.
#[async_trait]
pub trait PauseStore {
    /// Pauses an endpoint's pending deliveries if it or its merchant is disabled, or resumes
    /// its paused ones if both are enabled, [`SETTLE_BATCH`] rows per transaction until none
    /// is left. Returns (paused, resumed).
    async fn settle_endpoint(
        &self,
        endpoint: EndpointId,
        now: Timestamp,
    ) -> StoreResult<(u64, u64)>;
    /// One pass of the sweep: for every endpoint with pending or paused deliveries, settles
    /// them if they are in the wrong state for it, and expires those created before
    /// `now - max_age` ([`EXPIRE_BATCH`] per transaction; in-flight ones wait for their
    /// outcome).
    async fn sweep_deliveries(
        &self,
        now: Timestamp,
        max_age: chrono::Duration,
    ) -> StoreResult<Swept>;
}

/// `3 days`, `36 hours`, `90 minutes`, `45 seconds`: how long a delivery waited, in reasons.
pub fn describe_age(age: chrono::Duration) -> String {
    let secs = age.num_seconds().max(0);
    let (n, unit) = if secs >= 86_400 && secs % 86_400 == 0 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 && secs % 3_600 == 0 {
        (secs / 3_600, "hour")
    } else if secs >= 60 && secs % 60 == 0 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// SQL: the endpoint `$1` and its merchant are both enabled (`true`) or not (`false`).
fn endpoint_sendable(sendable: bool) -> &'static str {
    if sendable {
        "EXISTS (SELECT 1 FROM endpoints e JOIN merchants m ON m.id = e.merchant_id \
         WHERE e.id = $1 AND e.enabled = TRUE AND m.disabled = FALSE)"
    } else {
        "EXISTS (SELECT 1 FROM endpoints e JOIN merchants m ON m.id = e.merchant_id \
         WHERE e.id = $1 AND (e.enabled = FALSE OR m.disabled = TRUE))"
    }
}

/// Pauses up to `$3` pending deliveries of endpoint `$1` at `$2`, if it cannot be sent to.
/// `lock` is the row-locking clause (`FOR UPDATE SKIP LOCKED` inside a transaction that
/// already holds endpoint rows, on PostgreSQL, so it never waits on an outcome that waits on
/// it; rows it skips are paused by the next batch or the sweep).
pub(super) fn pause_statement(lock: &str) -> String {
    format!(
        "UPDATE deliveries SET status = 'paused', updated_at = $2 WHERE id IN (\
         SELECT d.id FROM deliveries d WHERE d.status = 'pending' AND d.endpoint_id = $1 LIMIT $3 {lock}) \
         AND {}",
        endpoint_sendable(false)
    )
}

/// Resumes up to `$3` paused deliveries of endpoint `$1`, due at `$2` or their old time if
/// later, if it can be sent to again.
pub(super) fn resume_statement(lock: &str) -> String {
    format!(
        "UPDATE deliveries SET status = 'pending', updated_at = $2, \
         next_attempt_at = CASE WHEN next_attempt_at < $2 THEN $2 ELSE next_attempt_at END WHERE id IN (\
         SELECT d.id FROM deliveries d WHERE d.status = 'paused' AND d.endpoint_id = $1 LIMIT $3 {lock}) \
         AND {}",
        endpoint_sendable(true)
    )
}

/// Expires up to `$3` deliveries in `status` of endpoint `$4` created before `$1` that are
/// not in flight at `$2`; `$5`…`$8` are the reasons (paused by the merchant, paused by the
/// endpoint, never attempted, still failing; the last followed by the last error). The
/// status is written into the text (ours, not input) so SQLite sees the partial index's
/// condition.
pub(super) fn expire_statement(status: &str, lock: &str) -> String {
    format!(
        "UPDATE deliveries SET status = 'expired', lease_until = NULL, leased_by = NULL, updated_at = $2, \
         last_error = CASE WHEN status = 'paused' THEN CASE WHEN EXISTS (SELECT 1 FROM merchants m \
         WHERE m.id = deliveries.merchant_id AND m.disabled = TRUE) THEN $5 ELSE $6 END \
         WHEN attempts = 0 THEN $7 ELSE $8 || COALESCE(' (last error: ' || last_error || ')', '') END \
         WHERE id IN (SELECT d.id FROM deliveries d WHERE d.status = '{status}' AND d.endpoint_id = $4 \
         AND d.created_at < $1 AND (d.leased_by IS NULL OR d.lease_until IS NULL OR d.lease_until < $2) \
         ORDER BY d.created_at LIMIT $3 {lock})"
    )
}

/// The first endpoint after `$1` with deliveries in `status` (one index probe: the sweep
/// skips through the index an endpoint at a time), whether it can be sent to, and whether
/// it has one created before `$2`.
pub(super) fn next_endpoint_statement(status: &str) -> String {
    format!(
        "SELECT e.id, (e.enabled = TRUE AND m.disabled = FALSE), EXISTS (SELECT 1 FROM deliveries o \
         WHERE o.status = '{status}' AND o.endpoint_id = e.id AND o.created_at < $2) \
         FROM endpoints e JOIN merchants m ON m.id = e.merchant_id WHERE e.id = (SELECT MIN(d.endpoint_id) \
         FROM deliveries d WHERE d.status = '{status}' AND d.endpoint_id > $1)"
    )
}

/// Implements [`PauseStore`]; `$skip_locked` is PostgreSQL's `FOR UPDATE SKIP LOCKED` (nothing
/// on SQLite, whose writes are serial).
macro_rules! impl_pause_store {
    ($store:ty, $db:ty, $skip_locked:literal) => {
        impl $store {
            /// One batch of pausing or resuming endpoint `endpoint` (whichever its state calls
            /// for; the other statement changes nothing), on `conn`. `in_transaction`: the
            /// caller's transaction holds endpoint rows, so locked deliveries are skipped rather
            /// than waited for. Returns (paused, resumed).
            async fn settle_batch(
                conn: &mut <$db as sqlx::Database>::Connection,
                endpoint: &str,
                now: $crate::clock::Timestamp,
                in_transaction: bool,
            ) -> $crate::store::StoreResult<(u64, u64)> {
                let lock = if in_transaction { $skip_locked } else { "" };
                let now = $crate::clock::to_millis(now);
                let limit = i64::from($crate::store::paused::SETTLE_BATCH);
                let mut changed = [0_u64; 2];
                let statements = [
                    $crate::store::paused::pause_statement(lock),
                    $crate::store::paused::resume_statement(lock),
                ];
                for (count, sql) in changed.iter_mut().zip(&statements) {
                    let done = sqlx::query(sql)
                        .bind(endpoint)
                        .bind(now)
                        .bind(limit)
                        .execute(&mut *conn)
                        .await?;
                    *count = done.rows_affected();
                }
                Ok((changed[0], changed[1]))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::PauseStore for $store {
            async fn settle_endpoint(
                &self,
                endpoint: $crate::ids::EndpointId,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<(u64, u64)> {
                let endpoint = endpoint.to_string();
                let full = u64::from($crate::store::paused::SETTLE_BATCH);
                let (mut paused, mut resumed) = (0, 0);
                loop {
                    let mut tx = self.pool.begin().await?;
                    // The merchant's lock first (a write, so SQLite takes its write lock before
                    // any read): an endpoint update waits for this batch, and this batch sees
                    // the state it left.
                    let locked = sqlx::query(
                        "UPDATE merchants SET lock_version = lock_version + 1 \
                         WHERE id = (SELECT merchant_id FROM endpoints WHERE id = $1)",
                    )
                    .bind(&endpoint)
                    .execute(&mut *tx)
                    .await?;
                    if locked.rows_affected() == 0 {
                        // Deleted meanwhile: its deliveries went with it.
                        return Ok((paused, resumed));
                    }
                    let (p, r) = Self::settle_batch(&mut tx, &endpoint, now, false).await?;
                    tx.commit().await?;
                    paused += p;
                    resumed += r;
                    if p < full && r < full {
                        return Ok((paused, resumed));
                    }
                }
            }

            async fn sweep_deliveries(
                &self,
                now: $crate::clock::Timestamp,
                max_age: chrono::Duration,
            ) -> $crate::store::StoreResult<$crate::store::Swept> {
                let mut swept = $crate::store::Swept::default();
                let cutoff = $crate::clock::to_millis(now - max_age);
                let age = $crate::store::paused::describe_age(max_age);
                let reasons = [
                    format!("expired after {age} while its merchant was disabled"),
                    format!("expired after {age} while its endpoint was disabled"),
                    format!("expired after {age} before its first attempt"),
                    format!("expired after {age} still failing"),
                ];
                // Paused first: the ones it resumes are then seen by the pending pass.
                for status in ["paused", "pending"] {
                    let next = $crate::store::paused::next_endpoint_statement(status);
                    let expire = $crate::store::paused::expire_statement(status, $skip_locked);
                    let mut after = String::new();
                    loop {
                        let found: Option<(String, bool, bool)> = sqlx::query_as(&next)
                            .bind(&after)
                            .bind(cutoff)
                            .fetch_optional(&self.pool)
                            .await?;
                        let Some((endpoint, sendable, has_old)) = found else {
                            break;
                        };
                        // What an interrupted pause or resume left in the wrong state.
                        if sendable == (status == "paused") {
                            let id = $crate::store::rows::parse_id(&endpoint)?;
                            let (paused, resumed) = self.settle_endpoint(id, now).await?;
                            swept.paused += paused;
                            swept.resumed += resumed;
                        }
                        while has_old {
                            let mut tx = self.pool.begin().await?;
                            let mut query = sqlx::query(&expire)
                                .bind(cutoff)
                                .bind($crate::clock::to_millis(now))
                                .bind(i64::from($crate::store::paused::EXPIRE_BATCH))
                                .bind(&endpoint);
                            for reason in &reasons {
                                query = query.bind(reason);
                            }
                            let expired = query.execute(&mut *tx).await?.rows_affected();
                            tx.commit().await?;
                            swept.expired += expired;
                            if expired < u64::from($crate::store::paused::EXPIRE_BATCH) {
                                break;
                            }
                        }
                        after = endpoint;
                    }
                }
                Ok(swept)
            }
        }
    };
}

pub(super) use impl_pause_store;

#[cfg(test)]
mod tests {
    use super::describe_age;

    #[test]
    fn ages_are_described_in_their_largest_whole_unit() {
        let age = |secs| describe_age(chrono::Duration::seconds(secs));
        assert_eq!(age(3 * 86_400), "3 days");
        assert_eq!(age(86_400), "1 day");
        assert_eq!(age(36 * 3_600), "36 hours");
        assert_eq!(age(90 * 60), "90 minutes");
        assert_eq!(age(45), "45 seconds");
        assert_eq!(age(86_401), "86401 seconds");
    }
}
