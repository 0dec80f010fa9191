//! Attempts and their outcomes: recording finished attempts (and what they mean for the
//! delivery and its endpoint's health), and reading deliveries and their attempts back.
//!
//! Uses the pure retry decision (`delivery::retry`) and the shared SQL helpers of `sql.rs`.

use async_trait::async_trait;

use super::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, DisabledReason, FinishedAttempt,
    Page, StoreResult,
};
use crate::ids::{DeliveryId, MerchantId};
use crate::keys::Mode;

/// Recorded attempts and the deliveries they belong to.
#[async_trait]
pub trait OutcomeStore {
    /// Records attempts, each under its lease, and their consequences for the deliveries and
    /// the endpoints' health, all in one transaction. Returns, for each attempt in order, the
    /// reason when the endpoint was disabled by it.
    async fn finish_attempts(
        &self,
        attempts: &[(String, FinishedAttempt)],
    ) -> StoreResult<Vec<DisabledReason>>;
    /// Deliveries of a merchant and mode, newest first.
    async fn list_deliveries(
        &self,
        merchant: MerchantId,
        mode: Mode,
        filter: &DeliveryFilter,
        page: &Page,
    ) -> StoreResult<Vec<DeliveryRecord>>;
    /// One delivery and its attempts.
    async fn get_delivery(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: DeliveryId,
    ) -> StoreResult<(DeliveryRecord, Vec<AttemptRecord>)>;
}

pub(super) const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.endpoint_id, d.mode, d.status, d.attempts, \
     d.next_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at, d.updated_at";

#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: String,
    event_id: String,
    endpoint_id: String,
    mode: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

pub(super) fn parse_status(text: &str) -> Result<DeliveryStatus, super::StoreError> {
    DeliveryStatus::ALL
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| super::StoreError::Corrupt(format!("delivery status {text}")))
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = super::StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, super::StoreError> {
        use super::rows::{opt_time, parse_id};
        Ok(DeliveryRecord {
            id: parse_id(&row.id)?,
            event_id: parse_id(&row.event_id)?,
            endpoint_id: parse_id(&row.endpoint_id)?,
            mode: row.mode.parse().map_err(super::StoreError::Corrupt)?,
            status: parse_status(&row.status)?,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            next_attempt_at: crate::clock::from_millis(row.next_attempt_at),
            last_status: row.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: row.last_error,
            delivered_at: opt_time(row.delivered_at),
            created_at: crate::clock::from_millis(row.created_at),
            updated_at: crate::clock::from_millis(row.updated_at),
        })
    }
}

/// Implements [`OutcomeStore`] for a store with a `pool` field.
macro_rules! impl_outcome_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn delivery_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::DeliveryId,
            ) -> $crate::store::StoreResult<$crate::store::DeliveryRecord> {
                let columns = $crate::store::outcomes::DELIVERY_COLUMNS;
                let sql = format!("SELECT {columns} FROM deliveries d WHERE d.id = $1 AND d.merchant_id = $2 AND d.mode = $3");
                let row: $crate::store::outcomes::DeliveryRow = Self::scoped_row(conn, &sql, id.to_string(), merchant, mode).await?;
                row.try_into()
            }

            /// Counts a failed attempt against its endpoint's health: starts (or continues) the
            /// endpoint's failure streak and disables it when the attempt says so (410 Gone) or
            /// the streak has lasted `disable_after`, audited and its pending deliveries paused
            /// in the same transaction. Returns
            /// the reason when this attempt disabled it.
            async fn endpoint_failed(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                endpoint: &str,
                attempt: &$crate::store::FinishedAttempt,
            ) -> $crate::store::StoreResult<Option<String>> {
                use $crate::records::Decision;
                let now = $crate::clock::to_millis(attempt.now);
                let since: Option<Option<i64>> = sqlx::query_scalar(
                    "UPDATE endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 RETURNING failing_since",
                )
                .bind(endpoint)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                let failing_for = since.flatten().map(|since| now - since).unwrap_or(0);
                let reason = if attempt.decision == Decision::FailedAndDisableEndpoint {
                    Some("the endpoint answered 410 Gone".to_owned())
                } else if failing_for >= attempt.disable_after.num_milliseconds() {
                    let since = $crate::clock::rfc3339($crate::clock::from_millis(now - failing_for));
                    Some(format!("every delivery attempt has failed since {since}"))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let changed: Option<(String, String)> = sqlx::query_as(
                        "UPDATE endpoints SET enabled = FALSE, disabled_reason = $2, disabled_at = $3, updated_at = $3 \
                         WHERE id = $1 AND enabled = TRUE RETURNING merchant_id, mode",
                    )
                    .bind(endpoint)
                    .bind(&reason)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some((merchant, mode)) = changed {
                        // Audited in the transaction that disables it: nobody sees the endpoint
                        // disabled without the entry saying why.
                        let audit = $crate::store::NewAuditEvent {
                            id: $crate::ids::AuditId::new(),
                            merchant_id: Some(merchant.parse().map_err(|_| {
                                $crate::store::StoreError::Corrupt(format!("endpoint {endpoint}: bad merchant id"))
                            })?),
                            mode: Some(mode.parse().map_err(|_| {
                                $crate::store::StoreError::Corrupt(format!("endpoint {endpoint}: bad mode"))
                            })?),
                            actor_key_id: None,
                            action: "endpoint.disable",
                            target: endpoint.to_owned(),
                            request_id: None,
                            details: serde_json::json!({ "reason": reason }),
                            created_at: attempt.now,
                        };
                        self.append_audit(&mut *conn, &audit).await?;
                        // Its queued work is paused with it (this batch's retries included, as
                        // they were written above); what this transaction cannot take without
                        // waiting follows once it has committed.
                        Self::settle_batch(&mut *conn, endpoint, attempt.now, true).await?;
                        return Ok(Some(reason));
                    }
                }
                Ok(None)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::OutcomeStore for $store {
            async fn finish_attempts(
                &self,
                attempts: &[(String, $crate::store::FinishedAttempt)],
            ) -> $crate::store::StoreResult<Vec<$crate::store::DisabledReason>> {
                use $crate::records::Decision;
                let mut tx = self.pool.begin().await?;
                // Only the holder of a lease records the outcome in the delivery (a lease that
                // ran out may have been taken over; the attempt is still recorded, the state is
                // not). One statement per chunk; it names the deliveries it changed. A delivery
                // paused while in flight (its endpoint or merchant was disabled meanwhile) ends
                // delivered or failed as the attempt says, but a retry keeps it paused: it is
                // neither lost nor put back in the queue of a disabled endpoint.
                let mut owned: std::collections::HashSet<String> = std::collections::HashSet::new();
                for chunk in attempts.chunks($crate::store::sql::ROWS_PER_STATEMENT) {
                    let mut update = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE deliveries SET status = CASE WHEN deliveries.status = 'paused' AND v.column3 = 'pending' \
                         THEN 'paused' ELSE v.column3 END, attempts = deliveries.attempts + 1, \
                         next_attempt_at = v.column4, lease_until = NULL, leased_by = NULL, last_status = v.column5, \
                         last_error = v.column6, delivered_at = COALESCE(v.column7, deliveries.delivered_at), \
                         updated_at = v.column8 FROM (",
                    );
                    update.push_values(chunk, |mut row, (lease, attempt)| {
                        let now = $crate::clock::to_millis(attempt.now);
                        let (status, next, delivered_at) = match attempt.decision {
                            Decision::Delivered => ("delivered", now, Some(now)),
                            Decision::RetryAt(at) => ("pending", $crate::clock::to_millis(at), None),
                            Decision::Failed | Decision::FailedAndDisableEndpoint => ("failed", now, None),
                        };
                        row.push_bind(attempt.delivery_id.to_string())
                            .push_bind(lease.clone())
                            .push_bind(status)
                            .push_bind(next)
                            .push_bind(attempt.record.status_code.map(i64::from))
                            .push_bind(attempt.record.error_class.clone())
                            .push_bind(delivered_at)
                            .push_bind(now);
                    });
                    update.push(
                        ") AS v WHERE deliveries.id = v.column1 AND deliveries.leased_by = v.column2 \
                         RETURNING deliveries.id",
                    );
                    let changed: Vec<String> =
                        update.build_query_scalar().persistent(false).fetch_all(&mut *tx).await?;
                    owned.extend(changed);
                }
                let mut results = vec![None; attempts.len()];
                // Endpoints whose last outcome in this batch is a delivery: their failure streak
                // ends (one write per endpoint, and only if there is a streak).
                let mut recovered: Vec<String> = Vec::new();
                // Endpoint rows are written in id order (in batch order per endpoint), so
                // concurrent batches on PostgreSQL never wait on each other in a cycle.
                let mut order: Vec<usize> = (0..attempts.len()).collect();
                order.sort_by_key(|n| attempts[*n].1.endpoint_id.to_string());
                for n in order {
                    let attempt = &attempts[n].1;
                    let endpoint = attempt.endpoint_id.to_string();
                    if !owned.contains(&attempt.delivery_id.to_string()) {
                        continue;
                    }
                    if attempt.decision == Decision::Delivered {
                        if !recovered.contains(&endpoint) {
                            recovered.push(endpoint);
                        }
                    } else {
                        recovered.retain(|other| *other != endpoint);
                        results[n] = self.endpoint_failed(&mut tx, &endpoint, attempt).await?;
                    }
                }
                recovered.sort();
                for endpoint in &recovered {
                    sqlx::query("UPDATE endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                }
                // Every attempt is recorded, owned or not.
                for chunk in attempts.chunks($crate::store::sql::ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, \
                         error_class, response_body, signatures) ",
                    );
                    insert.push_values(chunk, |mut row, (_, attempt)| {
                        let record = &attempt.record;
                        row.push_bind($crate::ids::AttemptId::new().to_string())
                            .push_bind(attempt.delivery_id.to_string())
                            .push_bind(i64::from(record.attempt))
                            .push_bind($crate::clock::to_millis(record.started_at))
                            .push_bind(record.status_code.map(i64::from))
                            .push_bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
                            .push_bind(record.error_class.clone())
                            .push_bind(record.response_body.clone())
                            .push_bind(record.signatures.join(" "));
                    });
                    insert.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                for (n, reason) in results.iter().enumerate() {
                    if reason.is_some() {
                        let attempt = &attempts[n].1;
                        // Committed already: a failure here is left to the sweep, not reported.
                        if let Err(err) = $crate::store::PauseStore::settle_endpoint(self, attempt.endpoint_id, attempt.now).await {
                            tracing::warn!(error = %err, endpoint = %attempt.endpoint_id, "cannot pause the rest of a disabled endpoint's deliveries now; the sweep will");
                        }
                    }
                }
                Ok(results)
            }

            async fn list_deliveries(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                filter: &$crate::store::DeliveryFilter,
                page: &$crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DeliveryRecord>> {
                let sql = format!(
                    "SELECT {} FROM deliveries d WHERE d.merchant_id = $1 AND d.mode = $2 \
                     AND ($3 IS NULL OR d.endpoint_id = $3) AND ($4 IS NULL OR d.event_id = $4) \
                     AND ($5 IS NULL OR d.status = $5) AND ($6 IS NULL OR d.created_at >= $6) \
                     AND ($7 IS NULL OR d.created_at < $7) AND ($8 IS NULL OR d.id < $8) ORDER BY d.id DESC LIMIT $9",
                    $crate::store::outcomes::DELIVERY_COLUMNS
                );
                let rows: Vec<$crate::store::outcomes::DeliveryRow> = sqlx::query_as(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .bind(filter.endpoint.map(|id| id.to_string()))
                    .bind(filter.event.map(|id| id.to_string()))
                    .bind(filter.status.map(|s| s.as_str()))
                    .bind(filter.since.map($crate::clock::to_millis))
                    .bind(filter.until.map($crate::clock::to_millis))
                    .bind(page.starting_after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_delivery(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::DeliveryId,
            ) -> $crate::store::StoreResult<($crate::store::DeliveryRecord, Vec<$crate::store::AttemptRecord>)> {
                let mut conn = self.pool.acquire().await?;
                let delivery = Self::delivery_in(&mut conn, merchant, mode, id).await?;
                let rows: Vec<(i64, i64, Option<i64>, i64, Option<String>, String, String)> = sqlx::query_as(
                    "SELECT attempt, started_at, status_code, latency_ms, error_class, response_body, signatures \
                     FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt, started_at",
                )
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await?;
                let attempts = rows
                    .into_iter()
                    .map(|(attempt, started_at, status, latency, class, body, signatures)| $crate::store::AttemptRecord {
                        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                        started_at: $crate::clock::from_millis(started_at),
                        status_code: status.and_then(|s| u16::try_from(s).ok()),
                        latency_ms: u64::try_from(latency).unwrap_or(0),
                        error_class: class,
                        response_body: body,
                        signatures: signatures.split_whitespace().map(str::to_owned).collect(),
                    })
                    .collect();
                Ok((delivery, attempts))
            }
        }
    };
}

pub(super) use impl_outcome_store;
