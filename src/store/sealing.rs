//! The keys a store needs before it may write, and the rows sealed under the master key.
//!
//! A store opens *locked*: it can migrate and read, but every write that appends to the audit
//! chain needs the audit key, and every row holding a secret is sealed on its way to the disk.
//! [`SealingStore::unlock`] hands the store the master-key [`Encryptor`], loads the audit key
//! (creating it, sealed, on a fresh database), seals rows an older version wrote in plaintext
//! (stored idempotent responses, endpoint headers) and, right after the keyed-chain migration, re-chains legacy
//! audit chains. Sealing old rows happens at start, not on first use, so no plaintext waits on
//! disk for a request that may never come; on SQLite it runs with `secure_delete`, so the
//! overwritten plaintext does not linger in free pages. [`SealingStore::reseal_rows`] is `hooksign rekey`'s
//! part for these rows.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::{StoreError, StoreResult};
use crate::audit::AuditKey;
use crate::clock::Timestamp;
use crate::secrets::{CryptoError, Encryptor};

/// What an unlocked store holds.
#[derive(Debug)]
pub struct Sealing {
    pub encryptor: Arc<Encryptor>,
    pub audit: AuditKey,
}

/// Shared by every clone of one store.
pub(super) type SealingCell = Arc<OnceLock<Sealing>>;

/// What [`SealingStore::unlock`] did to rows from older versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnlockReport {
    /// Unkeyed audit chains checked and re-chained under the audit key.
    pub rechained: Vec<String>,
    /// Unkeyed audit chains that did not verify and were left as they are.
    pub broken_legacy: Vec<String>,
    /// Plaintext rows from an older version sealed now.
    pub sealed_legacy_rows: u64,
}

/// What [`SealingStore::reseal_rows`] re-sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub audit_keys: u64,
    pub idempotent_responses: u64,
    pub endpoint_headers: u64,
    /// Stored responses no loaded key opens: left to expire (a replay answers 409).
    pub unreadable: u64,
}

/// A row that cannot be opened.
pub(super) fn sealed_error(what: &str, err: CryptoError) -> StoreError {
    StoreError::Sealed(format!("{what}: {err}"))
}

/// Unlocking, and the rows sealed under the master key.
#[async_trait]
pub trait SealingStore {
    /// Gives the store its keys (once; later calls keep the first), then updates rows from
    /// older versions; with `rechain_legacy` (only right after the keyed-chain migration) it
    /// also re-chains intact unkeyed audit chains. Fails if the audit key exists but none of
    /// `encryptor`'s keys opens it.
    async fn unlock(
        &self,
        encryptor: Arc<Encryptor>,
        now: Timestamp,
        rechain_legacy: bool,
    ) -> StoreResult<UnlockReport>;

    /// The audit key ([`StoreError::Locked`] before [`SealingStore::unlock`]).
    fn audit_key(&self) -> StoreResult<AuditKey>;

    /// Re-seals under `sealer` every row sealed with another master key, opening them with the
    /// store's own encryptor (which must know the old keys). Safe to run again.
    async fn reseal_rows(&self, sealer: &Encryptor) -> StoreResult<ResealReport>;
}

/// Implements [`SealingStore`] for a store with `pool` and `sealing` fields; `$wipe_on` and
/// `$wipe_off` turn overwriting of deleted content on and off for one connection, and `$flush`
/// moves the overwritten pages into the database file and empties the log (SQLite's
/// `secure_delete` and `wal_checkpoint(TRUNCATE)`; no-ops on PostgreSQL, where `VACUUM`
/// reclaims old row versions).
macro_rules! impl_sealing_store {
    ($store:ty, $db:ty, $wipe_on:literal, $wipe_off:literal, $flush:literal) => {
        impl $store {
            /// A connection that overwrites the content it deletes (`$wipe_on`).
            async fn wiping_connection(
                &self,
            ) -> $crate::store::StoreResult<sqlx::pool::PoolConnection<$db>> {
                let mut conn = self.pool.acquire().await?;
                sqlx::query($wipe_on).execute(&mut *conn).await?;
                Ok(conn)
            }

            /// Ends a [`wiping_connection`](Self::wiping_connection): overwriting off again, the
            /// overwritten pages flushed (`$wipe_off`, `$flush`).
            async fn end_wiping(
                mut conn: sqlx::pool::PoolConnection<$db>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query($wipe_off).execute(&mut *conn).await?;
                sqlx::query($flush).execute(&mut *conn).await?;
                Ok(())
            }

            /// Seals stored idempotent responses an older version kept in plaintext.
            async fn seal_legacy_idempotent(
                &self,
                report: &mut $crate::store::UnlockReport,
            ) -> $crate::store::StoreResult<()> {
                use $crate::secrets::RowAad;
                let encryptor = self.sealing()?.encryptor.clone();
                let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT key_id, idempotency_key, body FROM idempotency_keys \
                     WHERE body IS NOT NULL AND body_key_id IS NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                if rows.is_empty() {
                    return Ok(());
                }
                let mut conn = self.wiping_connection().await?;
                for (key, idempotency_key, body) in rows {
                    let api_key: $crate::ids::ApiKeyId = $crate::store::rows::parse_id(&key)?;
                    let aad = RowAad::IdempotentResponse { api_key, idempotency_key: &idempotency_key };
                    let sealed = encryptor.seal_bytes(&body, &aad);
                    let updated = sqlx::query(
                        "UPDATE idempotency_keys SET body = $3, body_key_id = $4 \
                         WHERE key_id = $1 AND idempotency_key = $2 AND body_key_id IS NULL",
                    )
                    .bind(&key)
                    .bind(&idempotency_key)
                    .bind(&sealed)
                    .bind(encryptor.key_id())
                    .execute(&mut *conn)
                    .await?;
                    report.sealed_legacy_rows += updated.rows_affected();
                }
                Self::end_wiping(conn).await
            }

            /// Seals endpoint headers an older version kept in plaintext.
            async fn seal_legacy_endpoint_headers(
                &self,
                report: &mut $crate::store::UnlockReport,
            ) -> $crate::store::StoreResult<()> {
                let encryptor = self.sealing()?.encryptor.clone();
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT id, merchant_id, mode, headers FROM endpoints \
                     WHERE headers <> '{}' AND headers_sealed IS NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                if rows.is_empty() {
                    return Ok(());
                }
                let mut conn = self.wiping_connection().await?;
                for (id, merchant, mode, headers) in rows {
                    let id_typed: $crate::ids::EndpointId = $crate::store::rows::parse_id(&id)?;
                    let merchant_typed: $crate::ids::MerchantId = $crate::store::rows::parse_id(&merchant)?;
                    let mode_typed: $crate::keys::Mode = mode.parse().map_err($crate::store::StoreError::Corrupt)?;
                    let aad = $crate::store::endpoints::headers_aad(id_typed, merchant_typed, mode_typed);
                    let sealed = encryptor.seal_bytes(headers.as_bytes(), &aad);
                    let updated = sqlx::query(
                        "UPDATE endpoints SET headers = '{}', headers_key_id = $3, headers_sealed = $4 \
                         WHERE id = $1 AND headers = $2 AND headers_sealed IS NULL",
                    )
                    .bind(&id)
                    .bind(&headers)
                    .bind(encryptor.key_id())
                    .bind(&sealed)
                    .execute(&mut *conn)
                    .await?;
                    report.sealed_legacy_rows += updated.rows_affected();
                }
                Self::end_wiping(conn).await
            }

            /// Writes a re-sealed row with `sql`, whose `$1` is the row's id, `$2` and `$3` its
            /// old and new master key ids (`row`, in that order) and `$4` the new ciphertext;
            /// returns the rows changed (none when another rekey got there first).
            async fn write_resealed(
                &self,
                sql: &str,
                row: (&str, &str, &str),
                resealed: &[u8],
            ) -> $crate::store::StoreResult<u64> {
                let (id, old_key, new_key) = row;
                let updated = sqlx::query(sql)
                    .bind(id)
                    .bind(old_key)
                    .bind(new_key)
                    .bind(resealed)
                    .execute(&self.pool)
                    .await?;
                Ok(updated.rows_affected())
            }

            /// The keys, or [`StoreError::Locked`].
            pub(super) fn sealing(&self) -> $crate::store::StoreResult<&$crate::store::Sealing> {
                self.sealing.get().ok_or($crate::store::StoreError::Locked)
            }

            /// Opens the audit key, creating it on a fresh database. Two daemons starting at
            /// once insert into the one slot; the loser reads the winner's key.
            async fn load_audit_key(
                &self,
                encryptor: &$crate::secrets::Encryptor,
                now: $crate::clock::Timestamp,
            ) -> $crate::store::StoreResult<$crate::audit::AuditKey> {
                use $crate::secrets::RowAad;
                for _ in 0..2 {
                    let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
                        "SELECT id, master_key_id, ciphertext FROM audit_keys WHERE slot = 1",
                    )
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some((id, master_key_id, sealed)) = row {
                        let plain = encryptor
                            .open_bytes(&master_key_id, &sealed, &RowAad::AuditKey { id: &id })
                            .map_err(|err| $crate::store::sealing::sealed_error(&format!("audit key {id}"), err))?;
                        let bytes: [u8; 32] = plain
                            .as_slice()
                            .try_into()
                            .map_err(|_| $crate::store::StoreError::Corrupt(format!("audit key {id}: not 32 bytes")))?;
                        let key = $crate::audit::AuditKey::from_bytes(bytes);
                        if key.id() != id {
                            return Err($crate::store::StoreError::Corrupt(format!("audit key {id}: id does not match")));
                        }
                        return Ok(key);
                    }
                    let key = $crate::audit::AuditKey::generate();
                    let sealed = encryptor.seal_bytes(key.bytes(), &RowAad::AuditKey { id: key.id() });
                    sqlx::query(
                        "INSERT INTO audit_keys (slot, id, master_key_id, ciphertext, created_at) \
                         VALUES (1, $1, $2, $3, $4) ON CONFLICT (slot) DO NOTHING",
                    )
                    .bind(key.id())
                    .bind(encryptor.key_id())
                    .bind(&sealed)
                    .bind($crate::clock::to_millis(now))
                    .execute(&self.pool)
                    .await?;
                }
                Err($crate::store::StoreError::Conflict("the audit key could not be created"))
            }

            /// Checks every chain that still holds unkeyed entries with the old SHA-256 and,
            /// when intact, re-chains it under the audit key in one transaction (serialised
            /// with appends by the head row). A chain that does not verify is left untouched.
            async fn rechain_legacy_audit(
                &self,
                report: &mut $crate::store::UnlockReport,
            ) -> $crate::store::StoreResult<()> {
                use $crate::audit::{entry_hash, legacy_entry_hash, HashedFields, GENESIS_HASH};
                let key = self.sealing()?.audit.clone();
                let chains: Vec<String> =
                    sqlx::query_scalar("SELECT DISTINCT chain FROM audit_events WHERE key_id IS NULL ORDER BY chain")
                        .fetch_all(&self.pool)
                        .await?;
                for chain in chains {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query("UPDATE audit_heads SET seq = seq WHERE chain = $1")
                        .bind(&chain)
                        .execute(&mut *tx)
                        .await?;
                    let sql = format!(
                        "SELECT {} FROM audit_events WHERE chain = $1 ORDER BY seq",
                        $crate::store::sql::AUDIT_COLUMNS
                    );
                    let rows: Vec<$crate::store::sql::AuditRow> =
                        sqlx::query_as(&sql).bind(&chain).fetch_all(&mut *tx).await?;
                    let mut entries: Vec<$crate::store::AuditRecord> = rows.into_iter().map(Into::into).collect();
                    let head: Option<(i64, String)> =
                        sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE chain = $1")
                            .bind(&chain)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let mut prev = GENESIS_HASH.to_owned();
                    let mut intact = true;
                    for (index, entry) in entries.iter().enumerate() {
                        if entry.key_id.is_some()
                            || entry.seq != index as i64 + 1
                            || entry.prev_hash != prev
                            || legacy_entry_hash(&HashedFields::of(entry)) != entry.hash
                        {
                            intact = false;
                            break;
                        }
                        prev = entry.hash.clone();
                    }
                    let last = entries.last().map(|e| (e.seq, e.hash.clone()));
                    if !intact || (head.is_some() && head != last) {
                        tracing::error!(%chain, "legacy audit chain does not verify; left unkeyed, `hooksign audit verify` reports it");
                        report.broken_legacy.push(chain);
                        continue;
                    }
                    let mut prev = GENESIS_HASH.to_owned();
                    let mut moved = false;
                    for entry in &mut entries {
                        entry.prev_hash = prev.clone();
                        entry.key_id = Some(key.id().to_owned());
                        entry.hash = entry_hash(&key, &HashedFields::of(entry));
                        let updated = sqlx::query(
                            "UPDATE audit_events SET prev_hash = $2, hash = $3, key_id = $4 WHERE id = $1 AND key_id IS NULL",
                        )
                        .bind(&entry.id)
                        .bind(&entry.prev_hash)
                        .bind(&entry.hash)
                        .bind(key.id())
                        .execute(&mut *tx)
                        .await?;
                        if updated.rows_affected() != 1 {
                            moved = true; // another daemon re-chained it first
                            break;
                        }
                        prev = entry.hash.clone();
                    }
                    if moved {
                        tx.rollback().await?;
                        continue;
                    }
                    let seq = entries.last().map_or(0, |e| e.seq);
                    sqlx::query(
                        "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    )
                    .bind(&chain)
                    .bind(seq)
                    .bind(&prev)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    report.rechained.push(chain);
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::SealingStore for $store {
            async fn unlock(
                &self,
                encryptor: std::sync::Arc<$crate::secrets::Encryptor>,
                now: $crate::clock::Timestamp,
                rechain_legacy: bool,
            ) -> $crate::store::StoreResult<$crate::store::UnlockReport> {
                if self.sealing.get().is_none() {
                    let audit = self.load_audit_key(&encryptor, now).await?;
                    let _ = self.sealing.set($crate::store::Sealing { encryptor, audit });
                }
                let mut report = $crate::store::UnlockReport::default();
                self.seal_legacy_idempotent(&mut report).await?;
                self.seal_legacy_endpoint_headers(&mut report).await?;
                if rechain_legacy {
                    self.rechain_legacy_audit(&mut report).await?;
                }
                Ok(report)
            }

            fn audit_key(&self) -> $crate::store::StoreResult<$crate::audit::AuditKey> {
                Ok(self.sealing()?.audit.clone())
            }

            async fn reseal_rows(
                &self,
                sealer: &$crate::secrets::Encryptor,
            ) -> $crate::store::StoreResult<$crate::store::ResealReport> {
                use $crate::secrets::RowAad;
                let sealing = self.sealing()?;
                let mut report = $crate::store::ResealReport::default();
                let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT id, master_key_id, ciphertext FROM audit_keys WHERE master_key_id <> $1",
                )
                .bind(sealer.key_id())
                .fetch_all(&self.pool)
                .await?;
                for (id, old_key, sealed) in rows {
                    let aad = RowAad::AuditKey { id: &id };
                    let plain = sealing
                        .encryptor
                        .open_bytes(&old_key, &sealed, &aad)
                        .map_err(|err| $crate::store::sealing::sealed_error(&format!("audit key {id}"), err))?;
                    let resealed = sealer.seal_bytes(&plain, &aad);
                    report.audit_keys += self.write_resealed(
                        "UPDATE audit_keys SET master_key_id = $3, ciphertext = $4 WHERE id = $1 AND master_key_id = $2",
                        (&id, &old_key, sealer.key_id()),
                        &resealed,
                    ).await?;
                }
                let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT key_id, idempotency_key, body_key_id, body FROM idempotency_keys \
                     WHERE body_key_id IS NOT NULL AND body_key_id <> $1 AND body IS NOT NULL",
                )
                .bind(sealer.key_id())
                .fetch_all(&self.pool)
                .await?;
                for (key, idempotency_key, old_key, sealed) in rows {
                    let api_key: $crate::ids::ApiKeyId = $crate::store::rows::parse_id(&key)?;
                    let aad = RowAad::IdempotentResponse { api_key, idempotency_key: &idempotency_key };
                    let Ok(plain) = sealing.encryptor.open_bytes(&old_key, &sealed, &aad) else {
                        report.unreadable += 1;
                        continue;
                    };
                    let resealed = sealer.seal_bytes(&plain, &aad);
                    let updated = sqlx::query(
                        "UPDATE idempotency_keys SET body = $4, body_key_id = $5 \
                         WHERE key_id = $1 AND idempotency_key = $2 AND body_key_id = $3",
                    )
                    .bind(&key)
                    .bind(&idempotency_key)
                    .bind(&old_key)
                    .bind(&resealed)
                    .bind(sealer.key_id())
                    .execute(&self.pool)
                    .await?;
                    report.idempotent_responses += updated.rows_affected();
                }
                let rows: Vec<(String, String, String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT id, merchant_id, mode, headers_key_id, headers_sealed FROM endpoints \
                     WHERE headers_key_id IS NOT NULL AND headers_key_id <> $1 AND headers_sealed IS NOT NULL",
                )
                .bind(sealer.key_id())
                .fetch_all(&self.pool)
                .await?;
                for (id, merchant, mode, old_key, sealed) in rows {
                    let aad = $crate::store::endpoints::headers_aad(
                        $crate::store::rows::parse_id(&id)?,
                        $crate::store::rows::parse_id(&merchant)?,
                        mode.parse().map_err($crate::store::StoreError::Corrupt)?,
                    );
                    // Endpoint headers do not expire: one no loaded key opens stops the rekey.
                    let plain = sealing
                        .encryptor
                        .open_bytes(&old_key, &sealed, &aad)
                        .map_err(|err| $crate::store::sealing::sealed_error(&format!("headers of endpoint {id}"), err))?;
                    let resealed = sealer.seal_bytes(&plain, &aad);
                    report.endpoint_headers += self.write_resealed(
                        "UPDATE endpoints SET headers_key_id = $3, headers_sealed = $4 WHERE id = $1 AND headers_key_id = $2",
                        (&id, &old_key, sealer.key_id()),
                        &resealed,
                    ).await?;
                }
                Ok(report)
            }
        }
    };
}

pub(super) use impl_sealing_store;
