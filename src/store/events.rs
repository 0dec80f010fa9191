//! Ingest and fan-out: an event and its delivery rows are written in one transaction, so once
//! the API answered 202 nothing is lost; and reading events back.
//!
//! Uses the pure event-type filter (`delivery::filter`) and the shared SQL helpers of `sql.rs`.

use async_trait::async_trait;

use super::{DeliveryRecord, EventRecord, NewEvent, Page, StoreResult};
use crate::ids::{DeliveryId, EventId, MerchantId};
use crate::keys::Mode;

/// Events and their fan-out into deliveries.
#[async_trait]
pub trait EventStore {
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
}

/// Implements [`EventStore`]; `$notify` is the statement that wakes other daemons when work
/// is queued (PostgreSQL's `NOTIFY`; SQLite has one daemon and the in-process signal suffices).
macro_rules! impl_event_store {
    ($store:ty, $db:ty, $notify:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::EventStore for $store {
            async fn ingest_events(
                &self,
                events: &[$crate::store::NewEvent],
            ) -> $crate::store::StoreResult<Vec<Vec<$crate::ids::DeliveryId>>> {
                let mut tx = self.pool.begin().await?;
                // The write comes first: on SQLite it takes the write lock before any read.
                for chunk in events.chunks($crate::store::sql::ROWS_PER_STATEMENT) {
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
                for chunk in rows.chunks($crate::store::sql::ROWS_PER_STATEMENT) {
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
                            id: $crate::store::rows::parse_id(&id)?,
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
                    $crate::store::outcomes::DELIVERY_COLUMNS
                );
                let deliveries: Vec<$crate::store::outcomes::DeliveryRow> =
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
        }
    };
}

pub(super) use impl_event_store;
