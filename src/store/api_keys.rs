//! Merchant API keys: the five-key limit, deactivation, revocation, deletion and rolling.
//!
//! Each change runs in one transaction that first takes the merchant's lock (see `sql.rs`), then
//! counts, then writes, so two concurrent creates cannot both see four active keys. The rules
//! themselves are the pure functions of [`crate::keys::rules`]; each change of an existing key
//! is refused unless the caller holds every scope of that key (`rules::may_act_on`), checked
//! in the same transaction that reads the key.

use async_trait::async_trait;

use super::{ApiKeyRecord, NewApiKey, NewAuditEvent, StoreResult};
use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, MerchantId};
use crate::keys::{Mode, ScopeSet};

/// A change to a key's name or on/off switch.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub active: Option<bool>,
}

/// Merchant API keys, always scoped to one merchant and mode: a key of another merchant or
/// mode is [`StoreError::NotFound`](super::StoreError::NotFound).
#[async_trait]
pub trait ApiKeyStore {
    /// Every key of the merchant in `mode` (revoked ones included).
    async fn list_api_keys(
        &self,
        merchant: MerchantId,
        mode: Mode,
    ) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Creates a key if fewer than five are active and its name is free.
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord>;

    /// Renames, deactivates or re-activates a key. Every change of an existing key takes the
    /// `caller`'s scopes and is refused unless they include all of the key's.
    #[allow(clippy::too_many_arguments)]
    async fn update_api_key(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: ApiKeyId,
        caller: &ScopeSet,
        patch: &KeyPatch,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord>;

    /// Revokes a key for good (idempotent).
    async fn revoke_api_key(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: ApiKeyId,
        caller: &ScopeSet,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord>;

    /// Deletes a revoked key.
    async fn delete_api_key(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: ApiKeyId,
        caller: &ScopeSet,
        audit: &NewAuditEvent,
    ) -> StoreResult<()>;

    /// Creates `successor` (same name and scopes) and makes the key `id` expire at `old_expires_at`.
    /// Returns the old key as updated.
    #[allow(clippy::too_many_arguments)]
    async fn roll_api_key(
        &self,
        merchant: MerchantId,
        mode: Mode,
        id: ApiKeyId,
        caller: &ScopeSet,
        successor: &NewApiKey,
        old_expires_at: Timestamp,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> StoreResult<ApiKeyRecord>;

    /// Records when keys were last used (batched; never moves a time backwards).
    async fn touch_api_keys(&self, uses: &[(ApiKeyId, Timestamp)]) -> StoreResult<()>;
}

/// Implements [`ApiKeyStore`] for a store type with a `pool` field.
macro_rules! impl_api_key_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn fetch_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                let columns = $crate::store::sql::KEY_COLUMNS;
                let sql = format!("SELECT {columns} FROM api_keys k WHERE k.id = $1 AND k.merchant_id = $2 AND k.kind = $3");
                let row: $crate::store::sql::KeyRow = Self::scoped_row(conn, &sql, id.to_string(), merchant, mode).await?;
                row.try_into()
            }

            /// Takes the merchant's lock and reads the key `id`, refused unless `caller` holds
            /// every scope of it (`keys::rules::may_act_on`): the start of every change of an
            /// existing key.
            async fn key_to_change(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
                caller: &$crate::keys::ScopeSet,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                Self::lock_merchant(&mut *conn, merchant).await?;
                let key = Self::fetch_key(&mut *conn, merchant, mode, id).await?;
                $crate::keys::rules::may_act_on(caller, &key.scopes)?;
                Ok(key)
            }

            /// Records `audit`, reads the key `id` as changed, commits and drops cached keys:
            /// the end of every change that answers with a key.
            async fn commit_key_change(
                &self,
                mut tx: sqlx::Transaction<'_, $db>,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                self.append_audit(&mut tx, audit).await?;
                let record = Self::fetch_key(&mut tx, merchant, mode, id).await?;
                tx.commit().await?;
                self.keys.changed();
                Ok(record)
            }

            /// Active keys (see `keys::rules::is_active`), or with `lasting_admins_only` the
            /// lasting admins (`keys::rules::is_lasting_admin`: also never expiring and holding
            /// api_keys:write), optionally not counting `except`.
            async fn count_active_keys(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                now: $crate::clock::Timestamp,
                except: Option<$crate::ids::ApiKeyId>,
                lasting_admins_only: bool,
            ) -> $crate::store::StoreResult<i64> {
                let sql = format!(
                    "SELECT COUNT(*) FROM api_keys WHERE merchant_id = $1 AND kind = $2 AND active = TRUE \
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3) \
                     AND ($4 IS NULL OR id <> $4) {}",
                    if lasting_admins_only {
                        "AND expires_at IS NULL AND (' ' || scopes || ' ') LIKE '% api_keys:write %'"
                    } else {
                        ""
                    }
                );
                Ok(sqlx::query_scalar(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .bind($crate::clock::to_millis(now))
                    .bind(except.map(|id| id.to_string()))
                    .fetch_one(&mut *conn)
                    .await?)
            }

            /// Whether a key other than `except` holds `name` (case-insensitively).
            async fn name_taken(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                name: &str,
                except: Option<$crate::ids::ApiKeyId>,
            ) -> $crate::store::StoreResult<bool> {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys WHERE merchant_id = $1 AND kind = $2 AND LOWER(name) = LOWER($3) \
                     AND revoked_at IS NULL AND expires_at IS NULL AND ($4 IS NULL OR id <> $4)",
                )
                .bind(merchant.to_string())
                .bind(mode.as_str())
                .bind(name)
                .bind(except.map(|id| id.to_string()))
                .fetch_one(&mut *conn)
                .await?;
                Ok(count > 0)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ApiKeyStore for $store {
            async fn list_api_keys(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKeyRecord>> {
                let ticket = match self.keys.list(merchant, mode) {
                    Ok(keys) => return Ok(keys),
                    Err(ticket) => ticket,
                };
                let sql = format!(
                    "SELECT {} FROM api_keys k WHERE k.merchant_id = $1 AND k.kind = $2",
                    $crate::store::sql::KEY_COLUMNS
                );
                let rows: Vec<$crate::store::sql::KeyRow> = sqlx::query_as(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                let keys = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<_>, _>>()?;
                self.keys.keep_list(ticket, merchant, mode, &keys);
                Ok(keys)
            }

            async fn create_api_key(
                &self,
                key: &$crate::store::NewApiKey,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                use $crate::keys::rules::{may_activate_another, KeyRuleError};
                let (merchant, mode) = match (key.merchant_id, key.kind) {
                    (Some(merchant), $crate::store::KeyKind::Merchant(mode)) => (merchant, mode),
                    _ => return Err($crate::store::StoreError::Corrupt("not a merchant key".into())),
                };
                let mut tx = self.pool.begin().await?;
                Self::lock_merchant(&mut tx, merchant).await?;
                may_activate_another(Self::count_active_keys(&mut tx, merchant, mode, now, None, false).await?)?;
                if Self::name_taken(&mut tx, merchant, mode, &key.name, None).await? {
                    return Err(KeyRuleError::DuplicateName.into());
                }
                Self::insert_key(&mut tx, key).await?;
                self.commit_key_change(tx, merchant, mode, key.id, audit).await
            }

            #[allow(clippy::too_many_arguments)]
            async fn update_api_key(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
                caller: &$crate::keys::ScopeSet,
                patch: &$crate::store::KeyPatch,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                use $crate::keys::rules::{may_activate_another, may_switch_off, status_of, KeyRuleError, StatusFilter};
                let mut tx = self.pool.begin().await?;
                let key = Self::key_to_change(&mut tx, merchant, mode, id, caller).await?;
                match status_of(&key, now) {
                    StatusFilter::Revoked => return Err(KeyRuleError::Revoked.into()),
                    StatusFilter::Expired if patch.active == Some(true) => return Err(KeyRuleError::Expired.into()),
                    _ => {}
                }
                match patch.active {
                    Some(true) if !key.active => {
                        may_activate_another(Self::count_active_keys(&mut tx, merchant, mode, now, None, false).await?)?;
                    }
                    Some(false) if key.active => {
                        let others = Self::count_active_keys(&mut tx, merchant, mode, now, Some(id), true).await?;
                        may_switch_off(&key, others, now)?;
                    }
                    _ => {}
                }
                if let Some(name) = &patch.name {
                    if Self::name_taken(&mut tx, merchant, mode, name, Some(id)).await? {
                        return Err(KeyRuleError::DuplicateName.into());
                    }
                }
                sqlx::query(
                    "UPDATE api_keys SET name = COALESCE($2, name), active = COALESCE($3, active) WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(patch.name.as_deref())
                .bind(patch.active)
                .execute(&mut *tx)
                .await?;
                self.commit_key_change(tx, merchant, mode, id, audit).await
            }

            async fn revoke_api_key(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
                caller: &$crate::keys::ScopeSet,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                let mut tx = self.pool.begin().await?;
                let key = Self::key_to_change(&mut tx, merchant, mode, id, caller).await?;
                if key.revoked_at.is_some() {
                    return Ok(key);
                }
                let others = Self::count_active_keys(&mut tx, merchant, mode, now, Some(id), true).await?;
                $crate::keys::rules::may_switch_off(&key, others, now)?;
                sqlx::query("UPDATE api_keys SET revoked_at = $2, active = FALSE WHERE id = $1")
                    .bind(id.to_string())
                    .bind($crate::clock::to_millis(now))
                    .execute(&mut *tx)
                    .await?;
                self.commit_key_change(tx, merchant, mode, id, audit).await
            }

            async fn delete_api_key(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
                caller: &$crate::keys::ScopeSet,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let key = Self::key_to_change(&mut tx, merchant, mode, id, caller).await?;
                if key.revoked_at.is_none() {
                    return Err($crate::keys::rules::KeyRuleError::NotRevoked.into());
                }
                sqlx::query("DELETE FROM api_keys WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await?;
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                self.keys.changed();
                Ok(())
            }

            async fn roll_api_key(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                id: $crate::ids::ApiKeyId,
                caller: &$crate::keys::ScopeSet,
                successor: &$crate::store::NewApiKey,
                old_expires_at: $crate::clock::Timestamp,
                now: $crate::clock::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                use $crate::keys::rules::{is_active, may_activate_another, KeyRuleError};
                let mut tx = self.pool.begin().await?;
                let key = Self::key_to_change(&mut tx, merchant, mode, id, caller).await?;
                if key.revoked_at.is_some() {
                    return Err(KeyRuleError::Revoked.into());
                }
                if key.expires_at.is_some() {
                    // Already rolled (or expired): rolling it again would fork its name.
                    return Err(KeyRuleError::Expired.into());
                }
                if !is_active(&key, now) {
                    return Err(KeyRuleError::NotActive.into());
                }
                // An immediate roll frees the old key's slot; an overlapping one needs a free slot.
                let except = (old_expires_at <= now).then_some(id);
                may_activate_another(Self::count_active_keys(&mut tx, merchant, mode, now, except, false).await?)?;
                sqlx::query("UPDATE api_keys SET expires_at = $2 WHERE id = $1")
                    .bind(id.to_string())
                    .bind($crate::clock::to_millis(old_expires_at))
                    .execute(&mut *tx)
                    .await?;
                Self::insert_key(&mut tx, successor).await?;
                self.commit_key_change(tx, merchant, mode, id, audit).await
            }

            async fn touch_api_keys(
                &self,
                uses: &[($crate::ids::ApiKeyId, $crate::clock::Timestamp)],
            ) -> $crate::store::StoreResult<()> {
                if uses.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                for (id, at) in uses {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                         AND (last_used_at IS NULL OR last_used_at < $2)",
                    )
                    .bind(id.to_string())
                    .bind($crate::clock::to_millis(*at))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                self.keys.changed();
                Ok(())
            }
        }
    };
}

pub(super) use impl_api_key_store;
