//! Endpoints, events, deliveries and attempts: the durable queue of the delivery engine.
//!
//! An event and its delivery rows are written in one transaction, so once the API answered
//! 202 nothing is lost. Workers claim due deliveries in batches with a lease (on PostgreSQL
//! with `FOR UPDATE SKIP LOCKED`, so many daemons share one queue); a lease that runs out is
//! claimed again (at-least-once delivery).
//!
//! Endpoint headers (usually the receiver's credentials) are sealed under the master key on
//! their way to the database and opened when a row is read, so the engine sends the real
//! values and nothing else sees them on disk.

use async_trait::async_trait;

use super::{NewAuditEvent, Page, StoreResult};
use crate::clock::Timestamp;
use crate::ids::{DeliveryId, EndpointId, EventId, MerchantId};
use crate::keys::Mode;
pub use crate::records::{
    AttemptRecord, ClaimedDelivery, DeliveryFilter, DeliveryRecord, DeliveryStatus, EndpointPatch,
    EndpointRecord, EventRecord, FinishedAttempt, NewEvent, Replayed,
};

/// The [`StoreError::Conflict`](super::StoreError::Conflict) of a retry of a delivery in flight.
pub const DELIVERY_IN_FLIGHT: &str = "delivery_in_flight";

/// SQL: the delivery (alias `d` or the bare table) is not being sent: no lease, or one that
/// has run out by `$now` (the placeholder given).
pub(super) fn idle_condition(now: &str) -> String {
    format!("(leased_by IS NULL OR lease_until IS NULL OR lease_until < {now})")
}

/// Why the engine disabled an endpoint after an attempt.
pub type DisabledReason = Option<String>;

/// The delivery engine's storage.
#[async_trait]
pub trait DeliveryStore {
    /// Stores a new endpoint, unless its merchant already has `max_per_mode` in its mode
    /// (`Conflict("endpoint_limit_reached")`; counted under the merchant's lock, so concurrent
    /// creates cannot pass the limit together).
    async fn create_endpoint(
        &self,
        endpoint: &EndpointRecord,
        max_per_mode: u32,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
    /// A page of a merchant's endpoints in a mode, newest first.
    async fn list_endpoints(
        &self,
        merchant: MerchantId,
        mode: Mode,
        page: &Page,
    ) -> StoreResult<Vec<EndpointRecord>>;
    /// One endpoint of a merchant and mode.
    async fn get_endpoint(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: EndpointId,
    ) -> StoreResult<EndpointRecord>;
    /// Applies a patch; re-enabling clears the disabled reason and the failure streak. A new URL
    /// on another origin for an endpoint with headers needs the headers in the same patch
    /// ([`EndpointPatch::moves_headers_elsewhere`]): `Conflict("headers_required")`, nothing written.
    #[allow(clippy::too_many_arguments)]
    async fn update_endpoint(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: EndpointId,
        patch: &EndpointPatch,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<EndpointRecord>;
    /// Deletes an endpoint and its deliveries.
    async fn delete_endpoint(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: EndpointId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Writes each event and one delivery per enabled endpoint whose filter matches, all in one
    /// transaction. Returns the deliveries created for each event, in order.
    async fn ingest_events(&self, events: &[NewEvent]) -> StoreResult<Vec<Vec<DeliveryId>>>;
    /// Events of a merchant and mode, newest first.
    async fn list_events(
        &self,
        merchant: MerchantId,
        mode: Mode,
        page: &Page,
    ) -> StoreResult<Vec<EventRecord>>;
    /// One event and its deliveries.
    async fn get_event(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: EventId,
    ) -> StoreResult<(EventRecord, Vec<DeliveryRecord>)>;

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
    /// Pending deliveries and the due time of the oldest, for metrics.
    async fn queue_stats(&self) -> StoreResult<(i64, Option<Timestamp>)>;
}

/// Rows per multi-row statement (ingest, outcomes): well under either database's limit on
/// bind parameters.
pub(super) const ROWS_PER_STATEMENT: usize = 256;

pub(super) const ENDPOINT_COLUMNS: &str = "e.id, e.merchant_id, e.mode, e.url, e.description, e.event_types, e.scheme, \
     e.enabled, e.max_in_flight, e.timeout_ms, e.headers, e.headers_key_id, e.headers_sealed, e.disabled_reason, \
     e.disabled_at, e.failing_since, e.created_at, e.updated_at";
pub(super) const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, d.endpoint_id, d.mode, d.status, d.attempts, \
     d.next_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at, d.updated_at";

#[derive(sqlx::FromRow)]
pub(super) struct EndpointRow {
    id: String,
    merchant_id: String,
    mode: String,
    url: String,
    description: String,
    event_types: String,
    scheme: String,
    enabled: bool,
    max_in_flight: i64,
    timeout_ms: i64,
    headers: String,
    headers_key_id: Option<String>,
    headers_sealed: Option<Vec<u8>>,
    disabled_reason: Option<String>,
    disabled_at: Option<i64>,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// What an endpoint's sealed headers are bound to.
pub(super) fn headers_aad(
    id: EndpointId,
    merchant: MerchantId,
    mode: Mode,
) -> crate::secrets::RowAad<'static> {
    crate::secrets::RowAad::EndpointHeaders {
        endpoint: id,
        merchant,
        mode,
    }
}

/// The sealed form of `headers` (no ciphertext for none): `(key id, ciphertext)`.
pub(super) fn seal_headers(
    encryptor: &crate::secrets::Encryptor,
    endpoint: &EndpointRecord,
) -> (Option<String>, Option<Vec<u8>>) {
    if endpoint.headers.is_empty() {
        return (None, None);
    }
    let json = zeroize::Zeroizing::new(serde_json::to_vec(&endpoint.headers).unwrap_or_default());
    let aad = headers_aad(endpoint.id, endpoint.merchant_id, endpoint.mode);
    (
        Some(encryptor.key_id().to_owned()),
        Some(encryptor.seal_bytes(&json, &aad)),
    )
}

impl EndpointRow {
    /// The record, with its headers opened by `encryptor`.
    pub(super) fn into_record(
        self,
        encryptor: &crate::secrets::Encryptor,
    ) -> Result<EndpointRecord, super::StoreError> {
        use super::records::{opt_time, parse_id};
        let row = self;
        let corrupt =
            |what: &str| super::StoreError::Corrupt(format!("endpoint {}: {what}", row.id));
        let id: EndpointId = parse_id(&row.id)?;
        let merchant_id: MerchantId = parse_id(&row.merchant_id)?;
        let mode: Mode = row.mode.parse().map_err(super::StoreError::Corrupt)?;
        let headers = match (&row.headers_key_id, &row.headers_sealed) {
            (Some(key_id), Some(sealed)) => {
                let plain = encryptor
                    .open_bytes(key_id, sealed, &headers_aad(id, merchant_id, mode))
                    .map_err(|err| {
                        super::sealing::sealed_error(&format!("headers of endpoint {id}"), err)
                    })?;
                serde_json::from_slice(&plain).map_err(|_| corrupt("headers"))?
            }
            // Plaintext from an older version (sealed at start), or no headers.
            _ => serde_json::from_str(&row.headers).map_err(|_| corrupt("headers"))?,
        };
        Ok(EndpointRecord {
            id,
            merchant_id,
            mode,
            url: row.url.clone(),
            description: row.description.clone(),
            event_types: row
                .event_types
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            scheme: row.scheme.parse().map_err(|_| corrupt("scheme"))?,
            enabled: row.enabled,
            max_in_flight: u32::try_from(row.max_in_flight)
                .map_err(|_| corrupt("max_in_flight"))?,
            timeout_ms: u32::try_from(row.timeout_ms).map_err(|_| corrupt("timeout_ms"))?,
            headers,
            disabled_reason: row.disabled_reason.clone(),
            disabled_at: opt_time(row.disabled_at),
            failing_since: opt_time(row.failing_since),
            created_at: crate::clock::from_millis(row.created_at),
            updated_at: crate::clock::from_millis(row.updated_at),
        })
    }
}

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
    match text {
        "pending" => Ok(DeliveryStatus::Pending),
        "delivered" => Ok(DeliveryStatus::Delivered),
        "failed" => Ok(DeliveryStatus::Failed),
        other => Err(super::StoreError::Corrupt(format!(
            "delivery status {other}"
        ))),
    }
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = super::StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, super::StoreError> {
        use super::records::{opt_time, parse_id};
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
        use super::records::parse_id;
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

/// Implements [`DeliveryStore`]; `$lock` is the row-locking clause of the claim subquery
/// (`FOR UPDATE OF d SKIP LOCKED` on PostgreSQL, nothing on SQLite, whose writes are serial),
/// and `$notify` the statement that wakes other daemons when work is queued (PostgreSQL's
/// `NOTIFY`; SQLite has one daemon and the in-process signal suffices).
macro_rules! impl_delivery_store {
    ($store:ty, $db:ty, $lock:literal, $notify:literal) => {
        impl $store {
            async fn endpoint_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                encryptor: &$crate::secrets::Encryptor,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EndpointId,
            ) -> $crate::store::StoreResult<$crate::store::EndpointRecord> {
                let sql = format!(
                    "SELECT {} FROM endpoints e WHERE e.id = $1 AND e.merchant_id = $2 AND e.mode = $3",
                    $crate::store::deliveries::ENDPOINT_COLUMNS
                );
                let row: Option<$crate::store::deliveries::EndpointRow> = sqlx::query_as(&sql)
                    .bind(id.to_string())
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.ok_or($crate::store::StoreError::NotFound)?.into_record(encryptor)
            }

            async fn delivery_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::DeliveryId,
            ) -> $crate::store::StoreResult<$crate::store::DeliveryRecord> {
                let sql = format!(
                    "SELECT {} FROM deliveries d WHERE d.id = $1 AND d.merchant_id = $2 AND d.mode = $3",
                    $crate::store::deliveries::DELIVERY_COLUMNS
                );
                let row: Option<$crate::store::deliveries::DeliveryRow> = sqlx::query_as(&sql)
                    .bind(id.to_string())
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.ok_or($crate::store::StoreError::NotFound)?.try_into()
            }

            async fn write_endpoint(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                endpoint: &$crate::store::EndpointRecord,
                insert: bool,
            ) -> $crate::store::StoreResult<()> {
                let (headers_key_id, headers_sealed) =
                    $crate::store::deliveries::seal_headers(&self.sealing()?.encryptor, endpoint);
                let sql = if insert {
                    "INSERT INTO endpoints (id, merchant_id, mode, url, description, event_types, scheme, enabled, \
                     max_in_flight, timeout_ms, headers, disabled_reason, disabled_at, failing_since, created_at, updated_at, \
                     headers_key_id, headers_sealed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
                } else {
                    "UPDATE endpoints SET url = $4, description = $5, event_types = $6, scheme = $7, enabled = $8, \
                     max_in_flight = $9, timeout_ms = $10, headers = $11, disabled_reason = $12, disabled_at = $13, \
                     failing_since = $14, updated_at = $16, headers_key_id = $17, headers_sealed = $18 \
                     WHERE id = $1 AND merchant_id = $2 AND mode = $3 AND created_at = $15"
                };
                sqlx::query(sql)
                    .bind(endpoint.id.to_string())
                    .bind(endpoint.merchant_id.to_string())
                    .bind(endpoint.mode.as_str())
                    .bind(&endpoint.url)
                    .bind(&endpoint.description)
                    .bind(endpoint.event_types.join(" "))
                    .bind(endpoint.scheme.as_str())
                    .bind(endpoint.enabled)
                    .bind(i64::from(endpoint.max_in_flight))
                    .bind(i64::from(endpoint.timeout_ms))
                    // The plaintext column keeps only the empty map; the headers are sealed.
                    .bind("{}")
                    .bind(endpoint.disabled_reason.as_deref())
                    .bind(endpoint.disabled_at.map($crate::clock::to_millis))
                    .bind(endpoint.failing_since.map($crate::clock::to_millis))
                    .bind($crate::clock::to_millis(endpoint.created_at))
                    .bind($crate::clock::to_millis(endpoint.updated_at))
                    .bind(headers_key_id)
                    .bind(headers_sealed)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::DeliveryStore for $store {
            async fn create_endpoint(
                &self,
                endpoint: &$crate::store::EndpointRecord,
                max_per_mode: u32,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, endpoint.merchant_id).await?;
                let existing: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM endpoints WHERE merchant_id = $1 AND mode = $2",
                )
                .bind(endpoint.merchant_id.to_string())
                .bind(endpoint.mode.as_str())
                .fetch_one(&mut *tx)
                .await?;
                if existing >= i64::from(max_per_mode) {
                    return Err($crate::store::StoreError::Conflict("endpoint_limit_reached"));
                }
                self.write_endpoint(&mut tx, endpoint, true).await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_endpoints(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                page: &$crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::EndpointRecord>> {
                let sql = format!(
                    "SELECT {} FROM endpoints e WHERE e.merchant_id = $1 AND e.mode = $2 \
                     AND ($3 IS NULL OR e.id < $3) ORDER BY e.id DESC LIMIT $4",
                    $crate::store::deliveries::ENDPOINT_COLUMNS
                );
                let rows: Vec<$crate::store::deliveries::EndpointRow> = sqlx::query_as(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .bind(page.starting_after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await?;
                let encryptor = &self.sealing()?.encryptor;
                rows.into_iter().map(|row| row.into_record(encryptor)).collect()
            }

            async fn get_endpoint(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EndpointId,
            ) -> $crate::store::StoreResult<$crate::store::EndpointRecord> {
                let mut conn = self.pool.acquire().await?;
                Self::endpoint_in(&mut conn, &self.sealing()?.encryptor, merchant, mode, id).await
            }

            async fn update_endpoint(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EndpointId,
                patch: &$crate::store::EndpointPatch,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::EndpointRecord> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                let mut endpoint = Self::endpoint_in(&mut tx, &self.sealing()?.encryptor, merchant, mode, id).await?;
                if patch.moves_headers_elsewhere(&endpoint) {
                    return Err($crate::store::StoreError::Conflict("headers_required"));
                }
                if let Some(url) = &patch.url {
                    endpoint.url = url.clone();
                }
                if let Some(description) = &patch.description {
                    endpoint.description = description.clone();
                }
                if let Some(types) = &patch.event_types {
                    endpoint.event_types = types.clone();
                }
                if let Some(scheme) = patch.scheme {
                    endpoint.scheme = scheme;
                }
                if let Some(max) = patch.max_in_flight {
                    endpoint.max_in_flight = max;
                }
                if let Some(timeout) = patch.timeout_ms {
                    endpoint.timeout_ms = timeout;
                }
                if let Some(headers) = &patch.headers {
                    endpoint.headers = headers.clone();
                }
                match patch.enabled {
                    Some(true) => {
                        endpoint.enabled = true;
                        endpoint.disabled_reason = None;
                        endpoint.disabled_at = None;
                        endpoint.failing_since = None;
                    }
                    Some(false) if endpoint.enabled => {
                        endpoint.enabled = false;
                        endpoint.disabled_reason = Some("disabled by an admin".into());
                        endpoint.disabled_at = Some(now);
                    }
                    _ => {}
                }
                endpoint.updated_at = now;
                self.write_endpoint(&mut tx, &endpoint, false).await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(endpoint)
            }

            async fn delete_endpoint(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EndpointId,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                Self::endpoint_in(&mut tx, &self.sealing()?.encryptor, merchant, mode, id).await?;
                sqlx::query("DELETE FROM endpoints WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn ingest_events(
                &self,
                events: &[$crate::store::NewEvent],
            ) -> $crate::store::StoreResult<Vec<Vec<$crate::ids::DeliveryId>>> {
                let mut tx = self.pool.begin().await?;
                // The write comes first: on SQLite it takes the write lock before any read.
                for chunk in events.chunks($crate::store::deliveries::ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO events (id, merchant_id, mode, type, body, created_at) ",
                    );
                    insert.push_values(chunk, |mut row, event| {
                        row.push_bind(event.id.to_string())
                            .push_bind(event.merchant_id.to_string())
                            .push_bind(event.mode.as_str())
                            .push_bind(event.event_type.clone())
                            .push_bind(event.body.clone())
                            .push_bind($crate::clock::to_millis(event.created_at));
                    });
                    insert.build().persistent(false).execute(&mut *tx).await?;
                }
                // Endpoints are read once per merchant and mode.
                let mut targets: std::collections::HashMap<(String, &'static str), Vec<(String, Vec<String>)>> =
                    std::collections::HashMap::new();
                // (delivery, event, endpoint, merchant, mode, time)
                let mut rows: Vec<($crate::ids::DeliveryId, String, String, String, &'static str, i64)> = Vec::new();
                let mut created_all = Vec::with_capacity(events.len());
                for event in events {
                    let key = (event.merchant_id.to_string(), event.mode.as_str());
                    if !targets.contains_key(&key) {
                        let found: Vec<(String, String)> = sqlx::query_as(
                            "SELECT id, event_types FROM endpoints WHERE merchant_id = $1 AND mode = $2 AND enabled = TRUE",
                        )
                        .bind(&key.0)
                        .bind(key.1)
                        .fetch_all(&mut *tx)
                        .await?;
                        let found = found
                            .into_iter()
                            .map(|(id, types)| (id, types.split_whitespace().map(str::to_owned).collect()))
                            .collect();
                        targets.insert(key.clone(), found);
                    }
                    let mut created = Vec::new();
                    for (endpoint_id, filter) in &targets[&key] {
                        if !$crate::delivery::filter::accepts(filter, &event.event_type) {
                            continue;
                        }
                        let id = $crate::ids::DeliveryId::new();
                        rows.push((
                            id,
                            event.id.to_string(),
                            endpoint_id.clone(),
                            key.0.clone(),
                            key.1,
                            $crate::clock::to_millis(event.created_at),
                        ));
                        created.push(id);
                    }
                    created_all.push(created);
                }
                for chunk in rows.chunks($crate::store::deliveries::ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, \
                         next_attempt_at, created_at, updated_at) ",
                    );
                    insert.push_values(chunk, |mut row, (id, event, endpoint, merchant, mode, at)| {
                        row.push_bind(id.to_string())
                            .push_bind(event.clone())
                            .push_bind(endpoint.clone())
                            .push_bind(merchant.clone())
                            .push_bind(*mode)
                            .push_bind("pending")
                            .push_bind(0_i64)
                            .push_bind(*at)
                            .push_bind(*at)
                            .push_bind(*at);
                    });
                    insert.build().persistent(false).execute(&mut *tx).await?;
                }
                if !rows.is_empty() && !$notify.is_empty() {
                    // Delivered to listening daemons when the transaction commits.
                    sqlx::query($notify).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(created_all)
            }

            async fn list_events(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                page: &$crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::EventRecord>> {
                let rows: Vec<(String, String, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT id, type, body, created_at FROM events WHERE merchant_id = $1 AND mode = $2 \
                     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
                )
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .bind(page.starting_after.as_deref())
                .bind(i64::from(page.limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, event_type, body, created_at)| {
                        Ok($crate::store::EventRecord {
                            id: $crate::store::records::parse_id(&id)?,
                            mode,
                            event_type,
                            body,
                            created_at: $crate::clock::from_millis(created_at),
                        })
                    })
                    .collect()
            }

            async fn get_event(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EventId,
            ) -> $crate::store::StoreResult<($crate::store::EventRecord, Vec<$crate::store::DeliveryRecord>)> {
                let row: Option<(String, Vec<u8>, i64)> = sqlx::query_as(
                    "SELECT type, body, created_at FROM events WHERE id = $1 AND merchant_id = $2 AND mode = $3",
                )
                .bind(id.to_string())
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .fetch_optional(&self.pool)
                .await?;
                let (event_type, body, created_at) = row.ok_or($crate::store::StoreError::NotFound)?;
                let sql = format!(
                    "SELECT {} FROM deliveries d WHERE d.event_id = $1 ORDER BY d.id",
                    $crate::store::deliveries::DELIVERY_COLUMNS
                );
                let deliveries: Vec<$crate::store::deliveries::DeliveryRow> =
                    sqlx::query_as(&sql).bind(id.to_string()).fetch_all(&self.pool).await?;
                let event = $crate::store::EventRecord {
                    id,
                    mode,
                    event_type,
                    body,
                    created_at: $crate::clock::from_millis(created_at),
                };
                Ok((event, deliveries.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?))
            }

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
                let skip = if busy.is_empty() {
                    String::new()
                } else {
                    let params: Vec<String> = (0..busy.len()).map(|n| format!("${}", n + 5)).collect();
                    format!("AND d.endpoint_id NOT IN ({}) ", params.join(", "))
                };
                let claim = format!(
                    "UPDATE deliveries SET lease_until = $1, leased_by = $2 WHERE id IN (\
                     SELECT d.id FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id \
                     JOIN merchants m ON m.id = d.merchant_id \
                     WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
                     AND (d.lease_until IS NULL OR d.lease_until < $3) AND e.enabled = TRUE AND m.disabled = FALSE \
                     {skip}ORDER BY d.next_attempt_at LIMIT $4 {}) RETURNING id",
                    $lock
                );
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
                    $crate::store::deliveries::ENDPOINT_COLUMNS
                ));
                details.push_bind(worker).push(" AND d.id IN (");
                let mut ids = details.separated(", ");
                for id in &claimed {
                    ids.push_bind(id.as_str());
                }
                details.push(") ORDER BY d.next_attempt_at");
                let rows: Vec<$crate::store::deliveries::ClaimRow> =
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
                    "UPDATE deliveries SET lease_until = NULL, leased_by = NULL WHERE leased_by LIKE $1 AND status = 'pending'",
                )
                .bind(format!("{worker}/%"))
                .execute(&self.pool)
                .await?;
                Ok(released.rows_affected())
            }

            async fn finish_attempts(
                &self,
                attempts: &[(String, $crate::store::FinishedAttempt)],
            ) -> $crate::store::StoreResult<Vec<$crate::store::DisabledReason>> {
                use $crate::delivery::retry::Decision;
                let mut tx = self.pool.begin().await?;
                // Only the holder of a lease records the outcome in the delivery (a lease that
                // ran out may have been taken over; the attempt is still recorded, the state is
                // not). One statement per chunk; it names the deliveries it changed.
                let mut owned: std::collections::HashSet<String> = std::collections::HashSet::new();
                for chunk in attempts.chunks($crate::store::deliveries::ROWS_PER_STATEMENT) {
                    let mut update = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE deliveries SET status = v.column3, attempts = deliveries.attempts + 1, \
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
                    let now = $crate::clock::to_millis(attempt.now);
                    let mut disabled = None;
                    let endpoint = attempt.endpoint_id.to_string();
                    if owned.contains(&attempt.delivery_id.to_string()) {
                        if attempt.decision == Decision::Delivered {
                            if !recovered.contains(&endpoint) {
                                recovered.push(endpoint);
                            }
                        } else {
                            recovered.retain(|other| *other != endpoint);
                            let since: Option<Option<i64>> = sqlx::query_scalar(
                                "UPDATE endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 RETURNING failing_since",
                            )
                            .bind(&endpoint)
                            .bind(now)
                            .fetch_optional(&mut *tx)
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
                                .bind(&endpoint)
                                .bind(&reason)
                                .bind(now)
                                .fetch_optional(&mut *tx)
                                .await?;
                                if let Some((merchant, mode)) = changed {
                                    // Audited in the transaction that disables it: nobody sees
                                    // the endpoint disabled without the entry saying why.
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
                                        target: endpoint.clone(),
                                        request_id: None,
                                        details: serde_json::json!({ "reason": reason }),
                                        created_at: attempt.now,
                                    };
                                    self.append_audit(&mut tx, &audit).await?;
                                    disabled = Some(reason);
                                }
                            }
                        }
                    }
                    results[n] = disabled;
                }
                recovered.sort();
                for endpoint in &recovered {
                    sqlx::query("UPDATE endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                }
                // Every attempt is recorded, owned or not.
                for chunk in attempts.chunks($crate::store::deliveries::ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, \
                         error_class, response_body, signatures) ",
                    );
                    insert.push_values(chunk, |mut row, (_, attempt)| {
                        let record = &attempt.record;
                        row.push_bind($crate::ids::AuditId::new().to_string().replacen("aud_", "att_", 1))
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
                    $crate::store::deliveries::DELIVERY_COLUMNS
                );
                let rows: Vec<$crate::store::deliveries::DeliveryRow> = sqlx::query_as(&sql)
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

pub(super) use impl_delivery_store;
