//! Merchants and the key lookups authentication needs.

use async_trait::async_trait;

use super::{
    ApiKeyRecord, AuthRecord, MerchantPatch, MerchantRecord, NewApiKey, NewAuditEvent, NewMerchant,
    Page, StoreResult,
};
use crate::ids::{ApiKeyId, MerchantId};

/// Merchants, operator keys, and finding a key by its token hash.
#[async_trait]
pub trait MerchantStore {
    /// Whether any operator key exists (the first `serve` creates one when none does).
    async fn has_operator_key(&self) -> StoreResult<bool>;

    /// Stores an operator key with its audit event.
    async fn insert_operator_key(&self, key: &NewApiKey, audit: &NewAuditEvent) -> StoreResult<()>;

    /// Creates a merchant with its first keys and signing secrets, in one transaction.
    async fn create_merchant(
        &self,
        merchant: &NewMerchant,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Newest first.
    async fn list_merchants(&self, page: &Page) -> StoreResult<Vec<MerchantRecord>>;

    /// One merchant.
    async fn get_merchant(&self, id: MerchantId) -> StoreResult<MerchantRecord>;

    /// Applies a name / disabled change and records it; disabling pauses the merchant's queued
    /// deliveries, re-enabling resumes them (`paused.rs`).
    async fn update_merchant(
        &self,
        id: MerchantId,
        patch: &MerchantPatch,
        audit: &NewAuditEvent,
    ) -> StoreResult<MerchantRecord>;

    /// Looks a token up by its hash, with its merchant's disabled flag.
    async fn find_api_key_by_hash(&self, token_hash: &str) -> StoreResult<Option<AuthRecord>>;

    /// One key, whoever owns it.
    async fn get_api_key(&self, id: ApiKeyId) -> StoreResult<ApiKeyRecord>;
}

/// Implements [`MerchantStore`] for a store type with a `pool` field.
macro_rules! impl_merchant_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::MerchantStore for $store {
            async fn has_operator_key(&self) -> $crate::store::StoreResult<bool> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE kind = 'operator'")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count > 0)
            }

            async fn insert_operator_key(
                &self,
                key: &$crate::store::NewApiKey,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_key(&mut tx, key).await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                self.keys.changed();
                Ok(())
            }

            async fn create_merchant(
                &self,
                merchant: &$crate::store::NewMerchant,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let created_at = $crate::clock::to_millis(merchant.created_at);
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO merchants (id, name, disabled, lock_version, created_at, updated_at) \
                     VALUES ($1, $2, FALSE, 0, $3, $3)",
                )
                .bind(merchant.id.to_string())
                .bind(&merchant.name)
                .bind(created_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::sql::conflict_on_unique("merchant already exists"))?;
                for key in &merchant.keys {
                    Self::insert_key(&mut tx, key).await?;
                }
                for secret in &merchant.secrets {
                    sqlx::query(
                        "INSERT INTO signing_secrets (id, merchant_id, mode, state, fingerprint, key_id, ciphertext, \
                         created_at, activated_at) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $7)",
                    )
                    .bind(secret.id.to_string())
                    .bind(merchant.id.to_string())
                    .bind(secret.mode.as_str())
                    .bind(&secret.fingerprint)
                    .bind(&secret.key_id)
                    .bind(&secret.ciphertext)
                    .bind($crate::clock::to_millis(secret.created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::sql::conflict_on_unique("an active secret already exists"))?;
                }
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                self.keys.changed();
                Ok(())
            }

            async fn list_merchants(
                &self,
                page: &$crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::MerchantRecord>> {
                let sql = format!(
                    "SELECT {} FROM merchants WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
                    $crate::store::sql::MERCHANT_COLUMNS
                );
                let rows: Vec<$crate::store::sql::MerchantRow> = sqlx::query_as(&sql)
                    .bind(page.starting_after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_merchant(
                &self,
                id: $crate::ids::MerchantId,
            ) -> $crate::store::StoreResult<$crate::store::MerchantRecord> {
                let sql = format!("SELECT {} FROM merchants WHERE id = $1", $crate::store::sql::MERCHANT_COLUMNS);
                let row: Option<$crate::store::sql::MerchantRow> =
                    sqlx::query_as(&sql).bind(id.to_string()).fetch_optional(&self.pool).await?;
                row.ok_or($crate::store::StoreError::NotFound)?.try_into()
            }

            async fn update_merchant(
                &self,
                id: $crate::ids::MerchantId,
                patch: &$crate::store::MerchantPatch,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::MerchantRecord> {
                let mut tx = self.pool.begin().await?;
                let sql = format!(
                    "UPDATE merchants SET name = COALESCE($2, name), disabled = COALESCE($3, disabled), \
                     updated_at = COALESCE($4, updated_at), lock_version = lock_version + 1 \
                     WHERE id = $1 RETURNING {}",
                    $crate::store::sql::MERCHANT_COLUMNS
                );
                let row: Option<$crate::store::sql::MerchantRow> = sqlx::query_as(&sql)
                    .bind(id.to_string())
                    .bind(patch.name.as_deref())
                    .bind(patch.disabled)
                    .bind(patch.updated_at.map($crate::clock::to_millis))
                    .fetch_optional(&mut *tx)
                    .await?;
                let record = row.ok_or($crate::store::StoreError::NotFound)?.try_into()?;
                // Disabling pauses the queued work of every endpoint, re-enabling resumes it
                // (where the endpoint itself is enabled): the first batch of each with the
                // change, the rest right after it (see `paused.rs`).
                let endpoints: Vec<String> = if patch.disabled.is_some() {
                    sqlx::query_scalar("SELECT id FROM endpoints WHERE merchant_id = $1 ORDER BY id")
                        .bind(id.to_string())
                        .fetch_all(&mut *tx)
                        .await?
                } else {
                    Vec::new()
                };
                let now = patch.updated_at.unwrap_or_else(chrono::Utc::now);
                for endpoint in &endpoints {
                    Self::settle_batch(&mut tx, endpoint, now, true).await?;
                }
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                self.keys.changed();
                for endpoint in &endpoints {
                    // Committed already: a failure here is left to the sweep, not reported.
                    let endpoint: $crate::ids::EndpointId = $crate::store::rows::parse_id(endpoint)?;
                    if let Err(err) = $crate::store::PauseStore::settle_endpoint(self, endpoint, now).await {
                        tracing::warn!(error = %err, %endpoint, "cannot pause or resume the rest of a merchant's deliveries now; the sweep will");
                    }
                }
                Ok(record)
            }

            async fn find_api_key_by_hash(
                &self,
                token_hash: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::AuthRecord>> {
                let ticket = match self.keys.find(token_hash) {
                    Ok(found) => return Ok(Some(found)),
                    Err(ticket) => ticket,
                };
                let sql = format!(
                    "SELECT {}, COALESCE(m.disabled, FALSE) AS merchant_disabled FROM api_keys k \
                     LEFT JOIN merchants m ON m.id = k.merchant_id WHERE k.token_hash = $1",
                    $crate::store::sql::KEY_COLUMNS
                );
                let row: Option<$crate::store::sql::AuthRow> =
                    sqlx::query_as(&sql).bind(token_hash).fetch_optional(&self.pool).await?;
                let found: Option<$crate::store::AuthRecord> = row.map(TryInto::try_into).transpose()?;
                // Only keys that exist are kept: a miss is not cached, so a key created by
                // anyone works at once.
                if let Some(found) = &found {
                    self.keys.keep(ticket, token_hash, found);
                }
                Ok(found)
            }

            async fn get_api_key(
                &self,
                id: $crate::ids::ApiKeyId,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                let sql = format!("SELECT {} FROM api_keys k WHERE k.id = $1", $crate::store::sql::KEY_COLUMNS);
                let row: Option<$crate::store::sql::KeyRow> =
                    sqlx::query_as(&sql).bind(id.to_string()).fetch_optional(&self.pool).await?;
                row.ok_or($crate::store::StoreError::NotFound)?.try_into()
            }

        }
    };
}

pub(super) use impl_merchant_store;
