//! Migration 0009 on a database that already has deliveries and attempts.

use crate::helpers::Backend;

#[tokio::test]
async fn migration_0009_keeps_every_delivery_and_attempt_on_sqlite() {
    migration_0009_keeps_every_delivery_and_attempt(Backend::Sqlite).await;
}

#[tokio::test]
async fn migration_0009_keeps_every_delivery_and_attempt_on_postgres() {
    migration_0009_keeps_every_delivery_and_attempt(Backend::Postgres).await;
}

/// Rows written under migration 0008 survive 0009 (on SQLite a rebuild of `deliveries` and
/// `delivery_attempts`): every delivery and attempt, their foreign keys (checked, and still
/// cascading), every index; the new statuses are accepted and others still refused.
async fn migration_0009_keeps_every_delivery_and_attempt(backend: Backend) {
    use sqlx::migrate::Migrator;
    let dir = tempfile::tempdir().unwrap();
    let (pg, folder) = match backend {
        Backend::Sqlite => (None, "sqlite"),
        Backend::Postgres => match crate::helpers::PgDatabase::create().await {
            Some(db) => (Some(db), "postgres"),
            None => return,
        },
    };
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    let all = Migrator::new(folder.as_path()).await.unwrap();
    let mut before = Migrator::new(folder.as_path()).await.unwrap();
    before.migrations = all
        .migrations
        .iter()
        .filter(|m| m.version <= 8)
        .cloned()
        .collect();
    assert_eq!(
        before.migrations.len() + 1,
        all.migrations.iter().filter(|m| m.version <= 9).count()
    );
    let rows = "INSERT INTO merchants (id, name, disabled, lock_version, created_at, updated_at) VALUES ('mch_1', 'm', FALSE, 0, 0, 0);
        INSERT INTO endpoints (id, merchant_id, mode, url, scheme, max_in_flight, timeout_ms, created_at, updated_at) VALUES ('ep_1', 'mch_1', 'test', 'http://x', 'bolt', 1, 1000, 0, 0);
        INSERT INTO events (id, merchant_id, mode, type, body, created_at) VALUES ('evt_1', 'mch_1', 'test', 't', X, 0);
        INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, next_attempt_at, last_error, created_at, updated_at) VALUES
            ('dlv_1', 'evt_1', 'ep_1', 'mch_1', 'test', 'pending', 2, 7, 'server_error', 1, 2),
            ('dlv_2', 'evt_1', 'ep_1', 'mch_1', 'test', 'delivered', 2, 7, NULL, 1, 2),
            ('dlv_3', 'evt_1', 'ep_1', 'mch_1', 'test', 'failed', 2, 7, 'timeout', 1, 2);
        INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, error_class) VALUES
            ('att_1', 'dlv_1', 1, 0, 500, 3, 'server_error'), ('att_2', 'dlv_1', 2, 0, 500, 3, 'server_error'),
            ('att_3', 'dlv_2', 1, 0, 500, 3, 'server_error'), ('att_4', 'dlv_2', 2, 0, 200, 3, NULL),
            ('att_5', 'dlv_3', 1, 0, NULL, 3, 'timeout'), ('att_6', 'dlv_3', 2, 0, NULL, 3, 'timeout');";
    macro_rules! check {
        ($pool:expr, $blob:literal) => {{
            let pool = $pool;
            before.run(&pool).await.unwrap();
            sqlx::raw_sql(&rows.replace(", X, 0)", concat!(", ", $blob, ", 0)")))
                .execute(&pool)
                .await
                .unwrap();
            all.run(&pool).await.unwrap();
            let count = |sql: &'static str| {
                let pool = pool.clone();
                async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
            };
            assert_eq!(count("SELECT COUNT(*) FROM deliveries").await, 3);
            assert_eq!(count("SELECT COUNT(*) FROM delivery_attempts").await, 6);
            assert_eq!(
                count("SELECT COUNT(*) FROM deliveries WHERE (id = 'dlv_1' AND status = 'pending' AND last_error = 'server_error') \
                       OR (id = 'dlv_2' AND status = 'delivered') OR (id = 'dlv_3' AND status = 'failed' AND attempts = 2)")
                .await,
                3
            );
            for status in ["paused", "expired"] {
                sqlx::query(&format!("UPDATE deliveries SET status = '{status}' WHERE id = 'dlv_1'"))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            assert!(sqlx::query("UPDATE deliveries SET status = 'lost' WHERE id = 'dlv_1'")
                .execute(&pool)
                .await
                .is_err());
            // The attempts still belong to their deliveries: deleting one takes its attempts.
            sqlx::query("DELETE FROM deliveries WHERE id = 'dlv_3'").execute(&pool).await.unwrap();
            assert_eq!(count("SELECT COUNT(*) FROM delivery_attempts").await, 4);
            pool
        }};
    }
    match backend {
        Backend::Sqlite => {
            use std::str::FromStr as _;
            let url = format!("sqlite://{}", dir.path().join("m.db").display());
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            let pool = check!(pool, "X'7B7D'");
            let dangling = sqlx::query("PRAGMA foreign_key_check")
                .fetch_all(&pool)
                .await
                .unwrap();
            assert!(dangling.is_empty(), "foreign_key_check is clean");
            let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(on, 1, "foreign keys stay on");
            let indexes: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 AND tbl_name IN ('deliveries', 'delivery_attempts', 'events') ORDER BY name",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let names: Vec<&str> = indexes.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "deliveries_by_endpoint",
                    "deliveries_by_event",
                    "deliveries_by_merchant",
                    "deliveries_due",
                    "deliveries_unsent",
                    "delivery_attempts_by_delivery",
                    "events_by_merchant",
                    "events_by_time",
                ]
            );
            // 0005's form of the due index, not 0004's.
            assert!(
                indexes[3]
                    .1
                    .contains("(next_attempt_at, lease_until, endpoint_id)"),
                "{}",
                indexes[3].1
            );
            let leftovers: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%0009%'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(leftovers, 0);
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&pg.as_ref().unwrap().url)
                .await
                .unwrap();
            let pool = check!(pool, "'\\x7b7d'");
            let unsent: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname IN ('deliveries_unsent', 'events_by_time', 'deliveries_due')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(unsent, 3);
            pool.close().await;
        }
    }
}
