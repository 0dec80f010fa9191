//! PostgreSQL: for several daemons sharing one database (and, with the delivery engine, one
//! queue).

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::key_cache::KeyCache;
use super::sql::impl_store;
use super::StoreResult;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL implementation of [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Always disabled: daemons on other machines share no signal a cache could wait on, so
    /// every request reads its key (see `key_cache.rs`).
    keys: Arc<KeyCache>,
    /// The master-key encryptor and audit key, once unlocked.
    sealing: super::sealing::SealingCell,
}

impl PgStore {
    /// Connects to `url`, e.g. `postgres://postgres@127.0.0.1/hooksign`, waiting up to 10 s
    /// for a connection (see [`PgStore::connect_with`]).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        Self::connect_with(url, max_connections, Duration::from_secs(10)).await
    }

    /// Connects to `url`; a query waits up to `acquire_timeout` for a connection.
    ///
    /// How the pool rides out a server restart or a cut connection: a connection that failed
    /// is not handed out again (each idle one is checked with a ping before use, and a broken
    /// one is replaced by a new connection); while the server refuses connections, a query
    /// keeps trying for `acquire_timeout` and then fails with `PoolTimedOut`, which the API
    /// answers 503 `database_unavailable`. Nothing needs restarting once the server is back.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(true)
            .connect(url)
            .await?;
        Ok(Self {
            pool,
            keys: Arc::new(KeyCache::disabled()),
            sealing: Default::default(),
        })
    }

    /// The pool, for tests that inspect raw rows.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Calls `wake` whenever another daemon queues deliveries (`LISTEN hooksign_deliveries`),
    /// until `stop`. Reconnects after errors; a missed notification only costs one poll interval.
    pub async fn listen_for_work(
        &self,
        wake: impl Fn() + Send,
        stop: tokio_util::sync::CancellationToken,
    ) {
        while !stop.is_cancelled() {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot LISTEN for new deliveries; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            if let Err(err) = listener.listen("hooksign_deliveries").await {
                tracing::warn!(error = %err, "cannot LISTEN for new deliveries; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    received = listener.recv() => match received {
                        Ok(_) => wake(),
                        Err(err) => {
                            tracing::warn!(error = %err, "LISTEN connection lost; reconnecting");
                            break;
                        }
                    },
                }
            }
        }
    }
}

super::merchants::impl_merchant_store!(PgStore);
super::api_keys::impl_api_key_store!(PgStore, sqlx::Postgres);
super::guards::impl_guard_store!(PgStore);
super::sealing::impl_sealing_store!(PgStore, sqlx::Postgres, "SELECT 1", "SELECT 1", "SELECT 1");
super::endpoints::impl_endpoint_store!(PgStore, sqlx::Postgres);
super::events::impl_event_store!(
    PgStore,
    sqlx::Postgres,
    "SELECT pg_notify('hooksign_deliveries', '')"
);
super::queue::impl_queue_store!(PgStore, sqlx::Postgres, "FOR UPDATE OF d SKIP LOCKED", "");
super::outcomes::impl_outcome_store!(PgStore, sqlx::Postgres);
super::replay::impl_replay_store!(PgStore, sqlx::Postgres);
super::paused::impl_pause_store!(PgStore, sqlx::Postgres, "FOR UPDATE SKIP LOCKED");
super::secrets::impl_secret_store!(PgStore, sqlx::Postgres);
super::policies::impl_policy_store!(PgStore);
super::retention::impl_retention_store!(PgStore, sqlx::Postgres, "FOR UPDATE SKIP LOCKED", "", "");
impl_store!(PgStore, sqlx::Postgres, "postgres", MIGRATOR);
