//! SQLite: the embedded default, for one machine. WAL mode, a busy timeout so writers queue
//! instead of failing, and foreign keys on.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlitePool;

use super::key_cache::KeyCache;
use super::sql::impl_store;
use super::StoreResult;
use crate::config::SqliteSynchronousMode;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// The SQLite implementation of [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// API keys cached between changes (see `key_cache.rs`); off unless enabled.
    keys: Arc<KeyCache>,
    /// The database file (`None` in memory).
    file: Option<PathBuf>,
    /// The master-key encryptor and audit key, once unlocked.
    sealing: super::sealing::SealingCell,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, e.g. `sqlite://hooksign-data/hooksign.db`,
    /// in WAL mode with the given durability of commits.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        synchronous: SqliteSynchronousMode,
    ) -> StoreResult<Self> {
        let synchronous = match synchronous {
            SqliteSynchronousMode::Full => SqliteSynchronous::Full,
            SqliteSynchronousMode::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // Pruned pages can be given back to the file system (`incremental_vacuum`).
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true);
        let path = options.get_filename();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let file = (!in_memory).then(|| path.to_path_buf());
        if let Some(file) = &file {
            private_database_files(file).map_err(sqlx::Error::Io)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            keys: Arc::new(KeyCache::disabled()),
            file,
            sealing: Default::default(),
        })
    }

    /// Caches API keys for up to `max_age` on `clock` between changes (zero: no cache).
    /// Daemons and CLI processes sharing this database file see each other's changes at once.
    pub fn with_key_cache(
        mut self,
        max_age: Duration,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> StoreResult<Self> {
        let cache = KeyCache::new(max_age, self.file.as_deref(), clock).map_err(sqlx::Error::Io)?;
        self.keys = Arc::new(cache);
        Ok(self)
    }

    /// The pool, for tests that inspect raw rows.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes a consistent copy of the database to `target` while daemons keep using it
    /// (`VACUUM INTO`: one read transaction, which WAL mode lets writers run beside). `target`
    /// must not exist; it is created 0600 first, since it holds what the database holds (the
    /// signing secrets sealed under the master key, the keys' hashes). Returns its size.
    pub async fn backup_to(&self, target: &Path) -> StoreResult<u64> {
        create_private_new_file(target).map_err(sqlx::Error::Io)?;
        let path = target.to_string_lossy().into_owned();
        if let Err(err) = sqlx::query("VACUUM INTO $1")
            .bind(&path)
            .execute(&self.pool)
            .await
        {
            let _ = std::fs::remove_file(target);
            return Err(err.into());
        }
        Ok(std::fs::metadata(target).map_err(sqlx::Error::Io)?.len())
    }
}

/// Creates an empty file readable by its owner only, refusing one that exists.
fn create_private_new_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

impl SqliteStore {
    /// Converts a file made before retention to `auto_vacuum = INCREMENTAL`, so pruned pages
    /// can be given back to the file system: the mode of an existing file changes only with a
    /// `VACUUM`, which rewrites the file (it needs as much free disk again and holds the
    /// database for its duration) and cannot run in a transaction, so in no migration. Returns
    /// whether it converted; a file already converted (or made since) costs one pragma.
    pub async fn use_incremental_vacuum(&self) -> StoreResult<bool> {
        const INCREMENTAL: i64 = 2;
        let mut conn = self.pool.acquire().await?;
        let mode = auto_vacuum_mode(&mut conn).await?;
        if mode == INCREMENTAL || self.file.is_none() {
            return Ok(false);
        }
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        Ok(true)
    }
}

/// The file's `auto_vacuum` mode. A connection answers the pragma from what it last read of
/// the file's header, so a read comes first (another connection may have converted the file).
async fn auto_vacuum_mode(conn: &mut sqlx::SqliteConnection) -> StoreResult<i64> {
    sqlx::query("SELECT COUNT(*) FROM sqlite_master")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut *conn)
        .await?)
}

/// Makes the database readable by its owner only, whatever the umask: the folder is created
/// 0700 and the file 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files the
/// database file's mode); files left looser by an older version are narrowed to 0600.
fn private_database_files(file: &Path) -> std::io::Result<()> {
    if let Some(parent) = file.parent() {
        crate::secrets::create_private_dir(parent)?;
    }
    crate::secrets::ensure_private_file(file)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let companion = PathBuf::from(name);
        if companion.exists() {
            crate::secrets::ensure_private_file(&companion)?;
        }
    }
    Ok(())
}

super::merchants::impl_merchant_store!(SqliteStore);
super::api_keys::impl_api_key_store!(SqliteStore, sqlx::Sqlite);
super::guards::impl_guard_store!(SqliteStore);
super::sealing::impl_sealing_store!(
    SqliteStore,
    sqlx::Sqlite,
    "PRAGMA secure_delete = ON",
    "PRAGMA secure_delete = OFF",
    "PRAGMA wal_checkpoint(TRUNCATE)"
);
super::endpoints::impl_endpoint_store!(SqliteStore, sqlx::Sqlite);
super::events::impl_event_store!(SqliteStore, sqlx::Sqlite, "");
super::queue::impl_queue_store!(SqliteStore, sqlx::Sqlite, "", "INDEXED BY deliveries_due");
super::outcomes::impl_outcome_store!(SqliteStore, sqlx::Sqlite);
super::replay::impl_replay_store!(SqliteStore, sqlx::Sqlite);
super::paused::impl_pause_store!(SqliteStore, sqlx::Sqlite, "");
super::secrets::impl_secret_store!(SqliteStore, sqlx::Sqlite);
super::policies::impl_policy_store!(SqliteStore);
super::retention::impl_retention_store!(
    SqliteStore,
    sqlx::Sqlite,
    "",
    "PRAGMA freelist_count",
    "PRAGMA incremental_vacuum"
);
impl_store!(SqliteStore, sqlx::Sqlite, "sqlite", MIGRATOR);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store as _;

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_created_and_narrowed_to_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new/data/hooksign.db");
        let url = format!("sqlite://{}", fresh.display());
        let store = SqliteStore::connect(&url, 2, SqliteSynchronousMode::Full)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(mode(fresh.parent().unwrap()), 0o700);
        for name in ["hooksign.db", "hooksign.db-wal", "hooksign.db-shm"] {
            assert_eq!(mode(&fresh.with_file_name(name)), 0o600, "{name}");
        }
        store.pool().close().await;
        // A file an older version left 0644 is narrowed at the next start.
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::connect(&url, 2, SqliteSynchronousMode::Full)
            .await
            .unwrap();
        assert_eq!(mode(&fresh), 0o600);
        store.pool().close().await;
    }

    #[tokio::test]
    async fn a_file_from_before_retention_is_converted_to_incremental_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let auto_vacuum = |pool: SqlitePool| async move {
            auto_vacuum_mode(&mut pool.acquire().await.unwrap())
                .await
                .unwrap()
        };
        // A file as older versions made it: no auto_vacuum, WAL, some rows.
        let old = SqlitePool::connect_with(
            SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE kept (x INTEGER)")
            .execute(&old)
            .await
            .unwrap();
        sqlx::query("INSERT INTO kept VALUES (1), (2), (3)")
            .execute(&old)
            .await
            .unwrap();
        assert_eq!(auto_vacuum(old.clone()).await, 0);
        old.close().await;

        let store = SqliteStore::connect(&url, 2, SqliteSynchronousMode::Full)
            .await
            .unwrap();
        // The connection option alone does not change an existing file.
        assert_eq!(auto_vacuum(store.pool().clone()).await, 0);
        store.pool().close().await;
        // What `serve` and `migrate` open the database with.
        let config = crate::config::Config {
            database: crate::config::DatabaseConfig {
                url: url.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let key = crate::secrets::MasterKey::generate();
        let encryptor = Arc::new(crate::secrets::Encryptor::new(&key));
        let opened = crate::store::connect(&config, encryptor).await.unwrap();
        opened.close().await;
        let store = SqliteStore::connect(&url, 2, SqliteSynchronousMode::Full)
            .await
            .unwrap();
        assert_eq!(auto_vacuum(store.pool().clone()).await, 2);
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kept")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(kept, 3);
        // Converted once; a new file is incremental from the start.
        assert!(!store.use_incremental_vacuum().await.unwrap());
        store.pool().close().await;
        let fresh = format!("sqlite://{}", dir.path().join("new.db").display());
        let store = SqliteStore::connect(&fresh, 2, SqliteSynchronousMode::Full)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(auto_vacuum(store.pool().clone()).await, 2);
        assert!(!store.use_incremental_vacuum().await.unwrap());
        store.pool().close().await;
    }

    #[tokio::test]
    async fn commits_are_flushed_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, expected) in [
            (SqliteSynchronousMode::Full, 2_i64),
            (SqliteSynchronousMode::Normal, 1),
        ] {
            let url = format!("sqlite://{}", dir.path().join("s.db").display());
            let store = SqliteStore::connect(&url, 2, mode).await.unwrap();
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(level, expected, "{mode:?}");
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(journal, "wal");
            store.pool().close().await;
        }
    }
}
