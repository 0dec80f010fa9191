//! Storage: one [`Store`] trait, implemented for SQLite ([`SqliteStore`], the embedded default)
//! and PostgreSQL ([`PgStore`], for several daemons sharing one database).
//!
//! SQL lives only below this module. Both implementations share their query text (see
//! `sql.rs`); where the dialects differ, the difference is named in one place. Every invariant
//! that concurrency could break (five active keys, one pending secret) is enforced inside a
//! database transaction, and the ones that can be are also enforced by indexes.

mod api_keys;
mod deliveries;
mod group_commit;
mod guards;
pub mod key_cache;
mod merchants;
mod postgres;
pub(crate) mod rows;
mod sealing;
mod secrets;
mod sql;
mod sqlite;

// The delivery store by concern (the `DeliveryStore` they make up is in `deliveries.rs`; the
// records are in `crate::records`), and the rotation policies.
mod endpoints;
mod events;
mod outcomes;
pub(crate) mod paused;
mod policies;
mod queue;
mod replay;
// Retention: pruning what has aged out, in batches.
mod retention;

// Which errors mean the database cannot be used right now.
mod faults;

use std::sync::Arc;

use async_trait::async_trait;

pub use api_keys::{ApiKeyStore, KeyPatch};
pub use deliveries::{DeliveryStore, DisabledReason, DELIVERY_IN_FLIGHT};
pub use group_commit::{group_commit_writers, GroupCommit};
pub use guards::{GuardStore, IdempotencyBegin, StoredResponse};
pub use merchants::MerchantStore;
pub use postgres::PgStore;
// The store takes and returns the plain records; its callers name them from here too.
pub use crate::records::*;
pub use sealing::{ResealReport, Sealing, SealingStore, UnlockReport};
pub use secrets::{rotation_state, SecretStore, StoredCommand};
pub use sqlite::SqliteStore;

pub use endpoints::EndpointStore;
pub use events::EventStore;
pub use outcomes::OutcomeStore;
pub use paused::{PauseStore, SETTLE_BATCH};
pub use policies::PolicyStore;
pub use queue::QueueStore;
pub use replay::{ReplayStore, BACKFILL_TOO_LARGE, MAX_BACKFILL_EVENTS};
pub use retention::RetentionStore;

pub use faults::Unavailable;

use crate::config::{Config, DatabaseKind};
use crate::ids::MerchantId;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The rotation state machine refused the command.
    #[error("{0}")]
    Rotation(#[from] crate::secrets::rotation::RotationError),
    /// A rule of the key lifecycle refused the change.
    #[error("{0}")]
    Rule(#[from] crate::keys::rules::KeyRuleError),
    /// The row does not exist (or is not visible to the caller).
    #[error("not found")]
    NotFound,
    /// A uniqueness or state invariant refused the write.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A write queue is full: nothing was written; the caller may retry shortly.
    #[error("the write queue is full")]
    Saturated,
    /// A row that cannot be turned back into a domain value.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A write needs the keys, but the store was opened without them (see
    /// [`SealingStore::unlock`]).
    #[error("the store was opened without the master key; this needs it")]
    Locked,
    /// A sealed row none of the loaded master keys opens.
    #[error("sealed row cannot be opened: {0}")]
    Sealed(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be used right now (see [`StoreError::unavailable`]); made from a
    /// `Database` error where one cause must be answered to several callers.
    #[error("{kind}: {cause}")]
    Unavailable { kind: Unavailable, cause: String },
}

/// Shorthand.
pub type StoreResult<T> = Result<T, StoreError>;

/// The persistence interface of the daemon.
#[async_trait]
pub trait Store:
    MerchantStore
    + ApiKeyStore
    + GuardStore
    + SecretStore
    + PolicyStore
    + DeliveryStore
    + SealingStore
    + RetentionStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Applies embedded migrations that have not been applied yet; returns the versions it
    /// applied.
    async fn migrate(&self) -> StoreResult<Vec<i64>>;

    /// Whether the database answers and every embedded migration is applied.
    async fn readiness(&self) -> Result<(), String>;

    /// Closes the pool.
    async fn close(&self);

    /// Appends one audit event on its own (for actions that change nothing else, like a
    /// reveal or a replayed answer).
    async fn record_audit(&self, audit: &NewAuditEvent) -> StoreResult<()>;

    /// A merchant's audit entries visible in `mode` (that mode's and the merchant-wide ones),
    /// newest first, optionally only one action.
    async fn list_audit_events(
        &self,
        merchant: MerchantId,
        mode: crate::keys::Mode,
        action: Option<&str>,
        page: &Page,
    ) -> StoreResult<Vec<AuditRecord>>;

    /// Audit entries of one chain in order, for `hooksign audit verify`.
    async fn audit_chain(&self, chain: &str) -> StoreResult<Vec<AuditRecord>>;

    /// The names of every audit chain.
    async fn audit_chains(&self) -> StoreResult<Vec<String>>;

    /// The recorded head (last entry) of every chain.
    async fn audit_heads(&self) -> StoreResult<Vec<AuditHead>>;
}

/// Opens the configured database (creating a SQLite file and its folder when needed),
/// applies migrations and unlocks the store with `encryptor` (see [`SealingStore::unlock`]).
pub async fn connect(
    config: &Config,
    encryptor: Arc<crate::secrets::Encryptor>,
) -> anyhow::Result<Arc<dyn Store>> {
    let clock = Arc::new(crate::clock::SystemClock);
    Ok(connect_with_postgres(config, encryptor, clock).await?.0)
}

/// Like [`connect`], also handing back the PostgreSQL store itself when that is the backend
/// (the daemon uses it to `LISTEN` for work queued by other instances). `clock` ages the
/// SQLite key cache's entries (the daemon passes its own, which tests move by hand).
pub async fn connect_with_postgres(
    config: &Config,
    encryptor: Arc<crate::secrets::Encryptor>,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<(Arc<dyn Store>, Option<PgStore>)> {
    let (store, postgres, applied) = open(config, clock).await?;
    // Legacy audit chains are re-chained only by the process that applies the keyed-chain
    // migration: nothing in the database can ask for it later (see `audit.rs`).
    let rechain = applied.contains(&KEYED_AUDIT_MIGRATION);
    let report = store.unlock(encryptor, chrono::Utc::now(), rechain).await?;
    if !report.rechained.is_empty() {
        tracing::info!(
            chains = report.rechained.len(),
            "re-chained legacy (unkeyed) audit chains under the audit key"
        );
    }
    if report.sealed_legacy_rows > 0 {
        tracing::info!(
            rows = report.sealed_legacy_rows,
            "sealed rows an older version stored in plaintext"
        );
    }
    if !report.broken_legacy.is_empty() {
        tracing::error!(chains = ?report.broken_legacy, "legacy audit chains that do not verify were left unkeyed");
    }
    Ok((store, postgres))
}

/// The migration that made audit chains keyed (`0006_keyed_audit_chain.sql`).
pub const KEYED_AUDIT_MIGRATION: i64 = 6;

async fn open(
    config: &Config,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<(Arc<dyn Store>, Option<PgStore>, Vec<i64>)> {
    let mut postgres = None;
    let mut sqlite = None;
    let store: Arc<dyn Store> = match config.database_kind()? {
        DatabaseKind::Sqlite => {
            let store = SqliteStore::connect(
                &config.database.url,
                config.database.max_connections,
                config.database.sqlite_synchronous,
            )
            .await?
            .with_key_cache(
                std::time::Duration::from_secs(config.auth.key_cache_secs),
                clock,
            )?;
            sqlite = Some(store.clone());
            Arc::new(store)
        }
        DatabaseKind::Postgres => {
            let store = PgStore::connect_with(
                &config.database.url,
                config.database.max_connections,
                std::time::Duration::from_secs(config.database.acquire_timeout_secs),
            )
            .await?;
            postgres = Some(store.clone());
            Arc::new(store)
        }
    };
    let applied = store.migrate().await?;
    if let Some(sqlite) = sqlite {
        // After the migrations, outside any transaction (see 0010_retention.sql).
        if sqlite.use_incremental_vacuum().await? {
            tracing::info!("converted the SQLite file to auto_vacuum = INCREMENTAL (VACUUM)");
        }
    }
    Ok((store, postgres, applied))
}
