//! `spawn_app()`: the real daemon on port 0 with its own database, SQLite always and
//! PostgreSQL when `HOOKSIGN_TEST_DATABASE_URL` is set (required under CI, see [`in_ci`]).
//!
//! Also what every test shares for waiting without sleeping ([`wait_until`]), running child
//! processes with a deadline ([`OutputWithin`], [`DaemonProcess`]) and skipping loudly
//! ([`skip`]: one summary line per skipped group after the test results).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use hooksign::clock::ManualClock;
use hooksign::config::{Config, Redacted};
use hooksign::secrets::MasterKey;
use hooksign::server::App;
use hooksign::state::AppState;
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
    // Tests run the scheduler by hand (`state.scheduler.tick()`) with a manual clock.
    config.secrets.scheduler_interval_secs = 3600;
    // Likewise `last_used_at` is flushed by hand (`state.auth.last_used.flush`) or at shutdown.
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
        self.another_instance_with(|_| {}).await
    }

    /// Like [`TestApp::another_instance`], with a chance to change its configuration first.
    pub async fn another_instance_with(&self, configure: impl FnOnce(&mut Config)) -> Instance {
        let mut config = self.config.clone();
        configure(&mut config);
        let app = App::build_with_clock(config, Arc::new(self.clock.clone()))
            .await
            .expect("second instance builds");
        assert!(
            app.operator_key_file.is_none(),
            "the second instance finds the operator key"
        );
        let base = format!("http://{}", app.local_addr().expect("bound"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run(async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Instance {
            base,
            stop: Some(stop),
            server: Some(server),
        }
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
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    /// Stops it (graceful shutdown: in-flight deliveries finish) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A PostgreSQL database of one test, dropped with it.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = match std::env::var("HOOKSIGN_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                skip(
                    "PostgreSQL variants",
                    "HOOKSIGN_TEST_DATABASE_URL is not set",
                );
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

/// Runs each named `async fn(TestApp)` once on SQLite and once on PostgreSQL, each on a
/// runtime with two worker threads.
///
/// - `on_both_stores!(a, b)`: on [`spawn_app`]'s daemon;
/// - `on_both_stores!(configure = f; a, b)`: on [`spawn_app_with`]`(backend, f)`, and
///   `configure = f, threads = 4; …` on a runtime with four threads;
/// - `on_both_stores!(spawn = path; a, b)`: on the daemon of an
///   `async fn(Backend) -> Option<TestApp>` of the module's own.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        $crate::on_both_stores!(@run 2, |backend| $crate::helpers::spawn_app(backend); $($name),+);
    };
    (spawn = $spawn:path; $($name:ident),+ $(,)?) => {
        $crate::on_both_stores!(@run 2, |backend| $spawn(backend); $($name),+);
    };
    (configure = $configure:expr; $($name:ident),+ $(,)?) => {
        $crate::on_both_stores!(configure = $configure, threads = 2; $($name),+);
    };
    (configure = $configure:expr, threads = $threads:literal; $($name:ident),+ $(,)?) => {
        $crate::on_both_stores!(
            @run $threads,
            |backend| $crate::helpers::spawn_app_with(backend, $configure);
            $($name),+
        );
    };
    (@run $threads:literal, $spawn:expr; $($name:ident),+) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                async fn sqlite() {
                    let app = ($spawn)($crate::helpers::Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                async fn postgres() {
                    if let Some(app) = ($spawn)($crate::helpers::Backend::Postgres).await {
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

/// Switches an endpoint on again (`PATCH {"enabled": true}`), asserted 200; the endpoint as
/// answered.
pub async fn enable_endpoint(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app
        .authed(Method::PATCH, &format!("/v1/endpoints/{id}"), token)
        .json(&serde_json::json!({ "enabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "enable {id}");
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

/// Whether the tests run under CI: `CI` set to anything but empty or `false` (any case), as
/// CI services set it (`true`, `1`, `yes`…). Under CI nothing may be skipped.
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

fn ci_value_means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|value| {
        !value.trim().is_empty() && !value.trim().eq_ignore_ascii_case("false")
    })
}

/// What was skipped in this run: group → (how many times, the first reason given).
static SKIPPED: Mutex<BTreeMap<String, (usize, String)>> = Mutex::new(BTreeMap::new());
static SUMMARY_AT_EXIT: Once = Once::new();

/// Skips part of a test for `reason`: a failure under CI (see [`in_ci`]), elsewhere counted
/// under `group` and reported in one line per group when the test binary exits, after
/// libtest's own summary (where output capture cannot hide it).
pub fn skip(group: &str, reason: &str) {
    assert!(
        !in_ci(),
        "CI is set, so nothing may be skipped, but {group} would be: {reason}"
    );
    let mut skipped = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    skipped
        .entry(group.to_owned())
        .or_insert_with(|| (0, reason.to_owned()))
        .0 += 1;
    SUMMARY_AT_EXIT.call_once(|| {
        // SAFETY: `print_skipped` is an `extern "C" fn()` that never unwinds (it ignores every
        // error), as `atexit` requires.
        let registered = unsafe { libc::atexit(print_skipped) };
        assert_eq!(registered, 0, "atexit");
    });
}

/// Writes the skip summary straight to the process's stderr: `eprintln!` would be captured
/// (or lost) by the test harness, a raw write is not.
extern "C" fn print_skipped() {
    let skipped = SKIPPED.lock().unwrap_or_else(PoisonError::into_inner);
    let mut stderr = std::io::stderr().lock();
    for (group, (count, reason)) in skipped.iter() {
        let _ = writeln!(
            stderr,
            "SKIPPED {count} × {group}: {reason} (under CI=true this fails instead)"
        );
    }
    let _ = stderr.flush();
}

/// Waits until `check` answers `Some`, polling every 20 ms; panics saying `what` was awaited
/// once `within` has passed.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the worker loop has finished two more claim passes and nothing is in flight.
/// The second pass began after this call (the first may have been running already), so it saw
/// the clock and the rows as they are now; whatever it claimed has been sent and recorded.
pub async fn engine_settled(app: &TestApp) {
    let before = app.state.delivery.claim_passes();
    wait_until(
        "two more claim passes with no delivery in flight",
        Duration::from_secs(15),
        || async {
            app.state.delivery.wake();
            (app.state.delivery.claim_passes() >= before + 2 && app.state.delivery.in_flight() == 0)
                .then_some(())
        },
    )
    .await;
}

/// Asserts that no claim pass took `delivery` since it made `attempts` attempts: no lease on
/// it and no further attempt (a claim leases it before anything is sent).
pub async fn assert_not_claimed(app: &TestApp, delivery: &str, attempts: u64, why: &str) {
    let row = format!(
        "SELECT COUNT(*) FROM deliveries WHERE id = '{delivery}' AND attempts = {attempts} \
         AND lease_until IS NULL AND leased_by IS NULL"
    );
    assert_eq!(app.count(&row).await, 1, "{why}: {delivery} was claimed");
}

/// How long a child process of a test may run before it is killed and the test fails.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// [`Command::output`] with a deadline: the child is killed, and the test fails, if it has not
/// exited within it. Standard input is closed, as with `output()`.
pub trait OutputWithin {
    fn output_within(&mut self, within: Duration) -> Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self, within: Duration) -> Output {
        let what = describe(self);
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
        wait_with_output_within(child, within, &what)
    }
}

/// Whether `program` is installed: `false` only when it is not found; one that is found must
/// start and answer `--version` with 0 within [`CHILD_DEADLINE`], or the test fails.
pub fn program_available(program: &str) -> bool {
    let spawned = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    // Only a program that is not there is "not installed": one that is there but cannot run,
    // or fails its `--version`, is broken, and that fails the test rather than skipping it.
    let child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return false,
        Err(err) => panic!("`{program}` is installed but cannot be started: {err}"),
    };
    let what = format!("`{program} --version`");
    let output = wait_with_output_within(child, CHILD_DEADLINE, &what);
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// The program and its first argument (the subcommand): later arguments may be secrets.
fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .next()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    format!("`{}`", words.join(" "))
}

/// Like [`Child::wait_with_output`], killing the child and failing if it runs past `within`.
pub fn wait_with_output_within(mut child: Child, within: Duration, what: &str) -> Output {
    let stdout = child.stdout.take().map(read_to_end_in_background);
    let stderr = child.stderr.take().map(read_to_end_in_background);
    let status = wait_within(&mut child, within, what);
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader.map_or_else(Vec::new, |reader| reader.join().expect("pipe reader"))
    };
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// Waits for `child` to exit; kills it and fails if it runs past `within`.
pub fn wait_within(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still running after {within:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_to_end_in_background(
    mut pipe: impl Read + Send + 'static,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A `hooksign serve` child process that bound port 0 and said which port it got (its
/// "hooksign listening" log line); killed when dropped.
pub struct DaemonProcess {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl DaemonProcess {
    /// Runs `command` (a `hooksign serve`, without `--listen`) on `127.0.0.1:0` with JSON
    /// logs on stderr, and waits up to 30 s for the address it bound. A `HOOKSIGN_LOG__FILTER`
    /// the command sets must let `hooksign::server=info` through.
    pub fn start(mut command: Command) -> DaemonProcess {
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hooksign serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (lines, received) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        // Reads to the end, so the daemon never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
                let _ = lines.send(line);
            }
        });
        let mut daemon = DaemonProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    let Ok(parsed) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if parsed["message"] == "hooksign listening" {
                        daemon.addr = parsed["addr"]
                            .as_str()
                            .and_then(|addr| addr.parse().ok())
                            .unwrap_or_else(|| panic!("no address in {line}"));
                        return daemon;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the daemon logged no address in 30 s: {}", daemon.log())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_within(&mut daemon.child, CHILD_DEADLINE, "hooksign serve");
                    panic!(
                        "the daemon exited ({status}) before listening: {}",
                        daemon.log()
                    )
                }
            }
        }
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (up to `within`) for the daemon to exit; its status and its whole log.
    pub fn wait_for_exit(&mut self, within: Duration) -> (ExitStatus, String) {
        let status = wait_within(&mut self.child, within, "hooksign serve");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        (status, self.log())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn any_ci_value_but_empty_or_false_means_ci() {
    for value in ["true", "1", "yes", "TRUE", "anything"] {
        assert!(ci_value_means_ci(Some(value)), "{value}");
    }
    for value in [
        None,
        Some(""),
        Some("false"),
        Some("False"),
        Some(" FALSE "),
    ] {
        assert!(!ci_value_means_ci(value), "{value:?}");
    }
}
