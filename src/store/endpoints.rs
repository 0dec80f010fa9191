//! Webhook endpoints: creating (under the per-mode limit), reading, patching and deleting them.
//!
//! An endpoint's extra headers (usually the receiver's credentials) are sealed under the master
//! key on their way to the database and opened when a row is read. Uses the shared SQL helpers
//! of `sql.rs` and the records of the store; nothing above the store.

use async_trait::async_trait;

use super::{EndpointPatch, EndpointRecord, NewAuditEvent, Page, StoreResult};
use crate::clock::Timestamp;
use crate::ids::{EndpointId, MerchantId};
use crate::keys::Mode;

/// A merchant's webhook endpoints.
#[async_trait]
pub trait EndpointStore {
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
    /// Applies a patch; re-enabling clears the disabled reason and the failure streak. Disabling
    /// pauses the endpoint's pending deliveries, re-enabling resumes them (`paused.rs`). A new URL
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
    /// Deletes an endpoint: at once for the API and the queue; its deliveries, their attempts
    /// and the row itself are removed in batches by the retention task.
    async fn delete_endpoint(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: EndpointId,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;
}

pub(super) const ENDPOINT_COLUMNS: &str = "e.id, e.merchant_id, e.mode, e.url, e.description, e.event_types, e.scheme, \
     e.enabled, e.max_in_flight, e.timeout_ms, e.headers, e.headers_key_id, e.headers_sealed, e.disabled_reason, \
     e.disabled_at, e.failing_since, e.created_at, e.updated_at, e.tls_verify";

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
    tls_verify: bool,
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
        use super::rows::{opt_time, parse_id};
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
            tls_verify: row.tls_verify,
        })
    }
}

/// Implements [`EndpointStore`] for a store with `pool` and `sealing` fields.
macro_rules! impl_endpoint_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn endpoint_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                encryptor: &$crate::secrets::Encryptor,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EndpointId,
            ) -> $crate::store::StoreResult<$crate::store::EndpointRecord> {
                let columns = $crate::store::endpoints::ENDPOINT_COLUMNS;
                let sql = format!("SELECT {columns} FROM endpoints e WHERE e.id = $1 AND e.merchant_id = $2 AND e.mode = $3 AND e.deleted_at IS NULL");
                let row: $crate::store::endpoints::EndpointRow = Self::scoped_row(conn, &sql, id.to_string(), merchant, mode).await?;
                row.into_record(encryptor)
            }

            async fn write_endpoint(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                endpoint: &$crate::store::EndpointRecord,
                insert: bool,
            ) -> $crate::store::StoreResult<()> {
                let (headers_key_id, headers_sealed) =
                    $crate::store::endpoints::seal_headers(&self.sealing()?.encryptor, endpoint);
                let sql = if insert {
                    "INSERT INTO endpoints (id, merchant_id, mode, url, description, event_types, scheme, enabled, \
                     max_in_flight, timeout_ms, headers, disabled_reason, disabled_at, failing_since, created_at, updated_at, \
                     headers_key_id, headers_sealed, tls_verify) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
                } else {
                    "UPDATE endpoints SET url = $4, description = $5, event_types = $6, scheme = $7, enabled = $8, \
                     max_in_flight = $9, timeout_ms = $10, headers = $11, disabled_reason = $12, disabled_at = $13, \
                     failing_since = $14, updated_at = $16, headers_key_id = $17, headers_sealed = $18, tls_verify = $19 \
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
                    .bind(endpoint.tls_verify)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::EndpointStore for $store {
            async fn create_endpoint(
                &self,
                endpoint: &$crate::store::EndpointRecord,
                max_per_mode: u32,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, endpoint.merchant_id).await?;
                let existing: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM endpoints WHERE merchant_id = $1 AND mode = $2 AND deleted_at IS NULL",
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
                    "SELECT {} FROM endpoints e WHERE e.merchant_id = $1 AND e.mode = $2 AND e.deleted_at IS NULL \
                     AND ($3 IS NULL OR e.id < $3) ORDER BY e.id DESC LIMIT $4",
                    $crate::store::endpoints::ENDPOINT_COLUMNS
                );
                let rows: Vec<$crate::store::endpoints::EndpointRow> = sqlx::query_as(&sql)
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
                if let Some(verify) = patch.tls_verify {
                    endpoint.tls_verify = verify;
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
                if patch.enabled.is_some() {
                    // Its queued work follows: paused or resumed, the first batch with the
                    // change, the rest right after it (see `paused.rs`).
                    Self::settle_batch(&mut tx, &id.to_string(), now, true).await?;
                }
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                if patch.enabled.is_some() {
                    // Committed already: a failure here is left to the sweep, not reported.
                    if let Err(err) = $crate::store::PauseStore::settle_endpoint(self, id, now).await {
                        tracing::warn!(error = %err, endpoint = %id, "cannot pause or resume the rest of an endpoint's deliveries now; the sweep will");
                    }
                }
                Ok(endpoint)
            }

            async fn delete_endpoint(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::EndpointId,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                // Marked, not removed: it is gone for the API at once and takes no delivery
                // (fan-out and the claim take enabled endpoints only); the retention task
                // removes its history and then the row in batches (`store/retention.rs`).
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                Self::endpoint_in(&mut tx, &self.sealing()?.encryptor, merchant, mode, id).await?;
                sqlx::query("UPDATE endpoints SET deleted_at = $2, enabled = FALSE, updated_at = $2 WHERE id = $1")
                    .bind(id.to_string())
                    .bind($crate::clock::to_millis(audit.created_at))
                    .execute(&mut *tx)
                    .await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_endpoint_store;
