//! `spawn_app()`: the real daemon on port 0 with its own database, SQLite always and
//! PostgreSQL when `HOOKSIGN_TEST_DATABASE_URL` is set (required when `CI=true`).

use std::path::PathBuf;
use std::sync::Arc;

use hooksign::clock::ManualClock;
use hooksign::config::{Config, Redacted};
use hooksign::secrets::MasterKey;
use hooksign::server::{App, AppState};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running daemon and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub operator_token: String,
    pub state: AppState,
    /// Moves the daemon's time (expiry, revert windows) without sleeping.
    pub clock: ManualClock,
    pub config: Config,
    pub backend: Backend,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    database: Option<PgDatabase>,
}

/// A merchant created through the API, with its first tokens.
pub struct TestMerchant {
    pub id: String,
    pub live_token: String,
    pub test_token: String,
    pub body: Value,
}

/// Spawns the app on `backend`; `None` only when Postgres is not configured outside CI.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with a chance to change the configuration first.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgDatabase::create().await?),
    };
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        master_key: Some(Redacted(MasterKey::generate().to_base64())),
        ..Config::default()
    };
    config.database.url = match &database {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("data/hooksign.db").display()),
    };
    config.log.filter = "warn".into();
    // Tests run the scheduler by hand (`secrets::scheduler::tick`) with a manual clock.
    config.secrets.scheduler_interval_secs = 3600;
    // Likewise `last_used_at` is flushed by hand (`state.last_used.flush`) or at shutdown.
    config.auth.last_used_flush_secs = 3600;
    // Receivers run on loopback; a short schedule (two retries) keeps dead-letter tests short.
    config.delivery.allow_private_networks = true;
    config.delivery.retry_schedule_secs = vec![5, 300];
    config.delivery.poll_interval_ms = 100;
    configure(&mut config);
    Some(start(config, backend, dir, database).await)
}

async fn start(
    config: Config,
    backend: Backend,
    dir: tempfile::TempDir,
    database: Option<PgDatabase>,
) -> TestApp {
    if std::env::var("HOOKSIGN_TEST_LOG").is_ok() {
        hooksign::telemetry::init_logging(hooksign::config::LogFormat::Human, "info");
    }
    let clock = ManualClock::new(chrono::Utc::now());
    let app = App::build_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("app builds");
    let addr = app.local_addr().expect("bound");
    let state = app.state().clone();
    let operator_file = app
        .operator_key_file
        .clone()
        .expect("a fresh database gets an operator key");
    let operator_token = std::fs::read_to_string(&operator_file)
        .expect("operator key file")
        .trim()
        .to_owned();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        operator_token,
        state,
        clock,
        data_dir: config.data_dir.clone(),
        config,
        backend,
        _dir: dir,
        stop: Some(stop),
        server: Some(server),
        database,
    }
}

impl TestApp {
    /// A request to `path` with no credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// A request authenticated with `token` as a bearer token.
    pub fn authed(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    /// A request with the operator key.
    pub fn operator(&self, method: Method, path: &str) -> RequestBuilder {
        self.authed(method, path, &self.operator_token)
    }

    /// Creates a merchant through the API and returns its tokens.
    pub async fn create_merchant(&self, name: &str) -> TestMerchant {
        let response = self
            .operator(Method::POST, "/v1/merchants")
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        let token = |mode: &str| {
            body["api_keys"]
                .as_array()
                .expect("api_keys")
                .iter()
                .find(|key| key["mode"] == mode)
                .and_then(|key| key["token"].as_str())
                .expect("token")
                .to_owned()
        };
        TestMerchant {
            id: body["id"].as_str().expect("id").to_owned(),
            live_token: token("live"),
            test_token: token("test"),
            body: body.clone(),
        }
    }

    /// Stops the server (graceful shutdown) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// Stops this instance and starts a new one on the same database and data folder.
    pub async fn restart(mut self) -> (TestApp, Option<PathBuf>) {
        self.stop().await;
        let config = self.config.clone();
        // The same machine's clock: a restart does not move time back.
        let clock = self.clock.clone();
        let app = App::build_with_clock(config.clone(), Arc::new(clock.clone()))
            .await
            .expect("app rebuilds");
        let created = app.operator_key_file.clone();
        let addr = app.local_addr().expect("bound");
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run(async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        let restarted = TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            operator_token: self.operator_token.clone(),
            state,
            clock,
            data_dir: self.data_dir.clone(),
            config,
            backend: self.backend,
            _dir: std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir")),
            stop: Some(stop),
            server: Some(server),
            database: self.database.take(),
        };
        (restarted, created)
    }

    /// The daemon's current time.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        hooksign::clock::Clock::now(&self.clock)
    }

    /// Starts a second daemon on the same database (as a second machine would).
    pub async fn another_instance(&self) -> Instance {
        let app = App::build_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
            .await
            .expect("second instance builds");
        assert!(
            app.operator_key_file.is_none(),
            "the second instance finds the operator key"
        );
        let base = format!("http://{}", app.local_addr().expect("bound"));
        let server = tokio::spawn(async move {
            app.run(std::future::pending()).await.expect("server runs");
        });
        Instance { base, server }
    }

    /// The state of a second daemon on the same database and clock, without serving HTTP
    /// (for running its background work, such as the scheduler, by hand).
    pub async fn another_instance_state(&self) -> AppState {
        let app = App::build_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
            .await
            .expect("second instance builds");
        app.state().clone()
    }

    /// Runs a raw statement on the app's own database (to simulate tampering or damage).
    pub async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.config.database.url).await?;
                let outcome = sqlx::query(sql).execute(&pool).await.map(|_| ());
                pool.close().await;
                outcome
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.config.database.url).await?;
                let outcome = sqlx::query(sql).execute(&pool).await.map(|_| ());
                pool.close().await;
                outcome
            }
        }
    }

    /// Counts rows with a raw query on the app's own database.
    pub async fn count(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.config.database.url)
                    .await
                    .expect("sqlite");
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
                pool.close().await;
                n
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.config.database.url)
                    .await
                    .expect("postgres");
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
                pool.close().await;
                n
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Another daemon sharing a [`TestApp`]'s database; stopped when dropped.
pub struct Instance {
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A PostgreSQL database of one test, dropped with it.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    async fn create() -> Option<PgDatabase> {
        let admin_url = match std::env::var("HOOKSIGN_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true but HOOKSIGN_TEST_DATABASE_URL is not set: PostgreSQL tests must run in CI"
                );
                eprintln!("skipping the PostgreSQL half: HOOKSIGN_TEST_DATABASE_URL is not set");
                return None;
            }
        };
        let name = format!("hooksign_test_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to HOOKSIGN_TEST_DATABASE_URL: {err}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&admin)
                            .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

/// `GET path` with `token`, asserted 200, as JSON.
pub async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.authed(Method::GET, path, token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Asserts the error envelope: status, type, code, and a request id matching the header.
pub async fn assert_error(
    response: reqwest::Response,
    status: u16,
    kind: &str,
    code: &str,
) -> Value {
    assert_eq!(response.status(), status, "status");
    let header = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["requestId"], header.as_str(), "{body}");
    body
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
