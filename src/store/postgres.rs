//! PostgreSQL: for several daemons sharing one database (and, with the delivery engine, one
//! queue).

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::sql::impl_store;
use super::StoreResult;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL implementation of [`Store`](super::Store).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url`, e.g. `postgres://postgres@127.0.0.1/hooksign`.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for tests that inspect raw rows.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

super::merchants::impl_merchant_store!(PgStore);
super::api_keys::impl_api_key_store!(PgStore, sqlx::Postgres);
super::guards::impl_guard_store!(PgStore);
super::deliveries::impl_delivery_store!(PgStore, sqlx::Postgres, "FOR UPDATE OF d SKIP LOCKED");
super::secrets::impl_secret_store!(PgStore, sqlx::Postgres);
impl_store!(PgStore, sqlx::Postgres, "postgres", MIGRATOR);
