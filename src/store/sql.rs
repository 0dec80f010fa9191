//! The SQL both stores share. SQLite and PostgreSQL accept the same text for everything the
//! daemon does (`$n` placeholders, `RETURNING`, partial indexes, `TRUE`/`FALSE`), so the
//! [`Store`](super::Store) implementation is written once, as a macro over the pool type, and
//! the few dialect differences are arguments of the macro.
//!
//! Serialising per merchant: a transaction that must not interleave with another for the same
//! merchant starts by bumping `merchants.lock_version`. On PostgreSQL that row lock blocks the
//! other transaction until commit; on SQLite the first write takes the database write lock. In
//! both cases the counts read afterwards are current.

use sqlx::FromRow;

use super::rows::{opt_time, parse_id};
use super::StoreError;
use crate::clock::from_millis;
use crate::keys::ScopeSet;
use crate::records::{ApiKeyRecord, AuditRecord, MerchantRecord, SecretRecord};

/// Rows per multi-row statement (ingest, outcomes): well under either database's limit on
/// bind parameters.
pub(super) const ROWS_PER_STATEMENT: usize = 256;

pub(super) const MERCHANT_COLUMNS: &str = "id, name, disabled, created_at, updated_at";
pub(super) const KEY_COLUMNS: &str =
    "k.id, k.merchant_id, k.kind, k.name, k.display_prefix, k.scopes, k.active, \
     k.revoked_at, k.expires_at, k.last_used_at, k.created_at";
pub(super) const AUDIT_COLUMNS: &str =
    "id, chain, seq, merchant_id, mode, actor_key_id, action, target, request_id, \
     details, created_at, prev_hash, hash, key_id";
pub(super) const SECRET_COLUMNS: &str =
    "id, merchant_id, mode, state, fingerprint, key_id, ciphertext, created_at, activated_at, revert_until, complete_at";

#[derive(FromRow)]
pub(super) struct MerchantRow {
    id: String,
    name: String,
    disabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<MerchantRow> for MerchantRecord {
    type Error = StoreError;

    fn try_from(row: MerchantRow) -> Result<Self, StoreError> {
        Ok(MerchantRecord {
            id: parse_id(&row.id)?,
            name: row.name,
            disabled: row.disabled,
            created_at: from_millis(row.created_at),
            updated_at: from_millis(row.updated_at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct KeyRow {
    id: String,
    merchant_id: Option<String>,
    kind: String,
    name: String,
    display_prefix: String,
    scopes: String,
    active: bool,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<KeyRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(ApiKeyRecord {
            id: parse_id(&row.id)?,
            merchant_id: row.merchant_id.as_deref().map(parse_id).transpose()?,
            kind: row.kind.parse().map_err(StoreError::Corrupt)?,
            name: row.name,
            display_prefix: row.display_prefix,
            scopes: ScopeSet::from_storage(&row.scopes).map_err(StoreError::Corrupt)?,
            active: row.active,
            revoked_at: opt_time(row.revoked_at),
            expires_at: opt_time(row.expires_at),
            last_used_at: opt_time(row.last_used_at),
            created_at: from_millis(row.created_at),
        })
    }
}

#[derive(FromRow)]
pub(super) struct AuthRow {
    #[sqlx(flatten)]
    key: KeyRow,
    merchant_disabled: bool,
}

impl TryFrom<AuthRow> for super::AuthRecord {
    type Error = StoreError;

    fn try_from(row: AuthRow) -> Result<Self, StoreError> {
        Ok(super::AuthRecord {
            key: row.key.try_into()?,
            merchant_disabled: row.merchant_disabled,
        })
    }
}

#[derive(FromRow)]
pub(super) struct AuditRow {
    id: String,
    chain: String,
    seq: i64,
    merchant_id: Option<String>,
    mode: Option<String>,
    actor_key_id: Option<String>,
    action: String,
    target: String,
    request_id: Option<String>,
    details: String,
    created_at: i64,
    prev_hash: String,
    hash: String,
    key_id: Option<String>,
}

impl From<AuditRow> for AuditRecord {
    fn from(row: AuditRow) -> Self {
        AuditRecord {
            id: row.id,
            chain: row.chain,
            seq: row.seq,
            merchant_id: row.merchant_id,
            mode: row.mode,
            actor_key_id: row.actor_key_id,
            action: row.action,
            target: row.target,
            request_id: row.request_id,
            details: row.details,
            created_at: row.created_at,
            prev_hash: row.prev_hash,
            hash: row.hash,
            key_id: row.key_id,
        }
    }
}

#[derive(FromRow)]
pub(super) struct SecretRow {
    id: String,
    merchant_id: String,
    mode: String,
    state: String,
    fingerprint: String,
    key_id: String,
    ciphertext: Vec<u8>,
    created_at: i64,
    activated_at: Option<i64>,
    revert_until: Option<i64>,
    complete_at: Option<i64>,
}

impl TryFrom<SecretRow> for SecretRecord {
    type Error = StoreError;

    fn try_from(row: SecretRow) -> Result<Self, StoreError> {
        Ok(SecretRecord {
            id: parse_id(&row.id)?,
            merchant_id: parse_id(&row.merchant_id)?,
            mode: row.mode.parse().map_err(StoreError::Corrupt)?,
            state: row.state.parse().map_err(StoreError::Corrupt)?,
            fingerprint: row.fingerprint,
            key_id: row.key_id,
            ciphertext: row.ciphertext,
            created_at: from_millis(row.created_at),
            activated_at: opt_time(row.activated_at),
            revert_until: opt_time(row.revert_until),
            complete_at: opt_time(row.complete_at),
        })
    }
}

/// Maps a unique-index violation to a [`StoreError::Conflict`] with `what`.
pub(super) fn conflict_on_unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(err),
    }
}

/// Implements [`Store`](super::Store) for a struct with a `pool: sqlx::Pool<$db>` field.
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal, $migrator:expr) => {
        impl $store {
            /// Takes the merchant's lock for the rest of the transaction.
            async fn lock_merchant(
                conn: &mut <$db as sqlx::Database>::Connection,
                merchant: $crate::ids::MerchantId,
            ) -> $crate::store::StoreResult<()> {
                let locked = sqlx::query("UPDATE merchants SET lock_version = lock_version + 1 WHERE id = $1")
                    .bind(merchant.to_string())
                    .execute(&mut *conn)
                    .await?;
                if locked.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                Ok(())
            }

            /// The one row `sql` reads with `$1` the row's id, `$2` its merchant and `$3` its mode;
            /// [`NotFound`]($crate::store::StoreError::NotFound) when it is not that merchant's
            /// in that mode (or does not exist).
            async fn scoped_row<R>(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &str,
                id: String,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
            ) -> $crate::store::StoreResult<R>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let row: Option<R> = sqlx::query_as(sql)
                    .bind(id)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.ok_or($crate::store::StoreError::NotFound)
            }

            /// Appends `event` to its chain, keyed with the audit key. The head row is bumped
            /// first: that row lock (PostgreSQL) or the write lock (SQLite) serialises appends
            /// to one chain until commit.
            async fn append_audit(
                &self,
                conn: &mut <$db as sqlx::Database>::Connection,
                event: &$crate::store::NewAuditEvent,
            ) -> $crate::store::StoreResult<()> {
                use $crate::audit::{entry_hash, HashedFields, GENESIS_HASH};
                let key = &self.sealing()?.audit;
                let chain = event.chain();
                let (seq, prev_hash): (i64, String) = sqlx::query_as(
                    "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 1, $2) \
                     ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq + 1 RETURNING seq, hash",
                )
                .bind(&chain)
                .bind(GENESIS_HASH)
                .fetch_one(&mut *conn)
                .await?;
                let id = event.id.to_string();
                let merchant_id = event.merchant_id.map(|id| id.to_string());
                let mode = event.mode.map(|mode| mode.as_str());
                let actor = event.actor_key_id.map(|id| id.to_string());
                let request_id = event.request_id.map(|id| id.to_string());
                let details = event.details.to_string();
                let created_at = $crate::clock::to_millis(event.created_at);
                let hash = entry_hash(key, &HashedFields {
                    id: &id,
                    chain: &chain,
                    seq,
                    merchant_id: merchant_id.as_deref(),
                    mode,
                    actor_key_id: actor.as_deref(),
                    action: event.action,
                    target: &event.target,
                    request_id: request_id.as_deref(),
                    details: &details,
                    created_at,
                    prev_hash: &prev_hash,
                });
                sqlx::query(
                    "INSERT INTO audit_events (id, chain, seq, merchant_id, mode, actor_key_id, action, target, \
                     request_id, details, created_at, prev_hash, hash, key_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&id)
                .bind(&chain)
                .bind(seq)
                .bind(merchant_id)
                .bind(mode)
                .bind(actor)
                .bind(event.action)
                .bind(&event.target)
                .bind(request_id)
                .bind(details)
                .bind(created_at)
                .bind(&prev_hash)
                .bind(&hash)
                .bind(key.id())
                .execute(&mut *conn)
                .await
                .map_err($crate::store::sql::conflict_on_unique("audit chain moved concurrently"))?;
                sqlx::query("UPDATE audit_heads SET hash = $2 WHERE chain = $1")
                    .bind(&chain)
                    .bind(&hash)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn insert_key(
                conn: &mut <$db as sqlx::Database>::Connection,
                key: &$crate::store::NewApiKey,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO api_keys (id, merchant_id, kind, name, token_hash, display_prefix, scopes, active, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8)",
                )
                .bind(key.id.to_string())
                .bind(key.merchant_id.map(|id| id.to_string()))
                .bind(key.kind.as_str())
                .bind(&key.name)
                .bind(&key.token_hash)
                .bind(&key.display_prefix)
                .bind(key.scopes.to_storage())
                .bind($crate::clock::to_millis(key.created_at))
                .execute(&mut *conn)
                .await
                .map_err($crate::store::sql::conflict_on_unique("api key already exists"))?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> $crate::store::StoreResult<Vec<i64>> {
                // Before the first migration the bookkeeping table does not exist yet.
                let before: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
                    .fetch_all(&self.pool)
                    .await
                    .unwrap_or_default();
                $migrator.run(&self.pool).await?;
                Ok($migrator
                    .iter()
                    .map(|m| m.version)
                    .filter(|version| !before.contains(version))
                    .collect())
            }

            async fn readiness(&self) -> Result<(), String> {
                let applied: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|err| format!("database unreachable: {err}"))?;
                let latest = $migrator.iter().map(|m| m.version).max().unwrap_or(0);
                match applied {
                    Some(version) if version >= latest => Ok(()),
                    _ => Err(format!("migrations not applied (database at {applied:?}, binary expects {latest})")),
                }
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn record_audit(&self, audit: &$crate::store::NewAuditEvent) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                if let Some(merchant) = audit.merchant_id {
                    Self::lock_merchant(&mut tx, merchant).await?;
                }
                self.append_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_audit_events(
                &self,
                merchant: $crate::ids::MerchantId,
                mode: $crate::keys::Mode,
                action: Option<&str>,
                page: &$crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AuditRecord>> {
                let sql = format!(
                    "SELECT {} FROM audit_events WHERE merchant_id = $1 AND (mode IS NULL OR mode = $2) \
                     AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
                    $crate::store::sql::AUDIT_COLUMNS
                );
                let rows: Vec<$crate::store::sql::AuditRow> = sqlx::query_as(&sql)
                    .bind(merchant.to_string())
                    .bind(mode.as_str())
                    .bind(action)
                    .bind(page.starting_after.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn audit_chain(&self, chain: &str) -> $crate::store::StoreResult<Vec<$crate::store::AuditRecord>> {
                let sql = format!(
                    "SELECT {} FROM audit_events WHERE chain = $1 ORDER BY seq",
                    $crate::store::sql::AUDIT_COLUMNS
                );
                let rows: Vec<$crate::store::sql::AuditRow> =
                    sqlx::query_as(&sql).bind(chain).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn audit_heads(&self) -> $crate::store::StoreResult<Vec<$crate::store::AuditHead>> {
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as("SELECT chain, seq, hash FROM audit_heads ORDER BY chain")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(chain, seq, hash)| $crate::store::AuditHead { chain, seq, hash })
                    .collect())
            }

            async fn audit_chains(&self) -> $crate::store::StoreResult<Vec<String>> {
                // A chain whose every entry was deleted still has its head.
                Ok(sqlx::query_scalar("SELECT chain FROM audit_heads UNION SELECT chain FROM audit_events ORDER BY 1")
                    .fetch_all(&self.pool)
                    .await?)
            }

        }
    };
}

pub(super) use impl_store;
