//! End-to-end load generator: runs the daemon in-process on a temporary SQLite database (or a
//! PostgreSQL URL), starts loopback receivers, creates a merchant and endpoints, posts 1 KiB
//! JSON events, and reports ingest and delivery throughput, accepted→received latency, RSS and
//! CPU. Loopback only, bounded in count and time.
//!
//! `cargo run --release --example loadgen -- --events 5000 --endpoints 1 --concurrency 32`
//! `cargo run --release --example loadgen -- --events 500 --rate 50` (paced latency run)
//! `cargo run --release --example loadgen -- --duration 600 --rate 2000` (soak: a sample of
//! RSS, CPU per delivery, p99 and the database's size every `--sample-secs`; see `support/soak.rs`)
//!
//! The in-process daemon reads `HOOKSIGN_*` environment variables like `hooksign serve` does
//! (e.g. `HOOKSIGN_RETENTION__…` to prune during a run); the settings a load test needs (rate
//! limits, loopback receivers, a temporary database) are set over them.
//!
//! Or against a running daemon (then RSS and CPU are the daemon's own, read from `/proc`):
//! `loadgen --target http://127.0.0.1:8080 --operator-key-file hooksign-data/operator.key
//! --daemon-pid $(pgrep -x hooksign)`. The daemon must let deliveries reach loopback
//! (`HOOKSIGN_DELIVERY__ALLOW_PRIVATE_NETWORKS=true`) and allow the request rate
//! (`HOOKSIGN_AUTH__RATE_PER_SEC` and `HOOKSIGN_AUTH__BURST`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use clap::Parser;
use hooksign::config::{Config, Redacted};
use hooksign::secrets::MasterKey;
use hooksign::server::App;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[path = "support/soak.rs"]
mod soak;

/// Load-test hooksign on this machine.
#[derive(Debug, Parser)]
struct Args {
    /// Events to post.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// Endpoints (each with its own receiver) every event goes to.
    #[arg(long, default_value_t = 1)]
    endpoints: usize,
    /// Requests in flight at once when not paced.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Post at this many events per second instead of as fast as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Initiate a rotation first: every delivery carries two signatures.
    #[arg(long)]
    rotation_pending: bool,
    /// PostgreSQL URL (default: a temporary SQLite database).
    #[arg(long)]
    database_url: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Instead of events: for this many seconds each, hammer the authenticated
    /// `GET /v1/api-keys` and a bare axum hello route in the same process, and compare.
    #[arg(long)]
    api_bench: Option<u64>,
    /// Load a running daemon at this base URL instead of starting one.
    #[arg(long, requires = "operator_key_file")]
    target: Option<String>,
    /// With `--target`: the operator key file of that daemon (a merchant is created with it).
    #[arg(long)]
    operator_key_file: Option<std::path::PathBuf>,
    /// With `--target`: the daemon's process id, to report its own RSS and CPU.
    #[arg(long, requires = "target")]
    daemon_pid: Option<u32>,
    /// Soak: post `--rate` events per second (default 1,000) for this many seconds, sampling
    /// every `--sample-secs`, instead of posting `--events`.
    #[arg(long)]
    duration: Option<u64>,
    /// Soak: seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Soak with `--target`: the daemon's SQLite data directory, to report its size.
    #[arg(long, requires = "target")]
    data_dir: Option<std::path::PathBuf>,
}

/// Requests per second of `GET url` with `concurrency` loops for `seconds`.
async fn hammer(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    concurrency: usize,
    seconds: u64,
) -> f64 {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut loops = Vec::new();
    for _ in 0..concurrency {
        let (client, url, token) = (client.clone(), url.to_owned(), token.map(str::to_owned));
        loops.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < until {
                let mut request = client.get(&url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                if let Ok(response) = request.send().await {
                    if response.status().is_success() && response.bytes().await.is_ok() {
                        done += 1;
                    }
                }
            }
            done
        }));
    }
    let mut total = 0;
    for handle in loops {
        total += handle.await.unwrap_or(0);
    }
    total as f64 / seconds as f64
}

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> &'static str {
    let now = Instant::now();
    if let Some(id) = headers
        .get("x-hooksign-event-id")
        .and_then(|v| v.to_str().ok())
    {
        arrivals
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push(now);
    }
    "ok"
}

/// `/proc/self` or `/proc/PID`.
fn proc_dir(pid: Option<u32>) -> String {
    pid.map_or_else(|| "/proc/self".to_owned(), |pid| format!("/proc/{pid}"))
}

fn proc_status(pid: Option<u32>, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_seconds(pid: Option<u32>) -> f64 {
    let stat = std::fs::read_to_string(format!("{}/stat", proc_dir(pid))).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    // Whose RSS and CPU are measured: the daemon's process, or this whole process.
    let measured = args.daemon_pid;
    let (base, operator, stop, daemon) = if let Some(target) = &args.target {
        anyhow::ensure!(
            is_loopback(target),
            "--target must be a loopback address (127.0.0.0/8, [::1] or localhost): load stays on this machine"
        );
        let file = args.operator_key_file.as_ref().expect("clap requires it");
        let operator = std::fs::read_to_string(file)?.trim().to_owned();
        (
            target.trim_end_matches('/').to_owned(),
            operator,
            None,
            None,
        )
    } else {
        // Defaults and `HOOKSIGN_*` from the environment, then what a load test needs.
        let mut config = Config::from_figment(Config::figment(None))?;
        config.listen = "127.0.0.1:0".into();
        config.data_dir = dir.path().join("data");
        config.master_key = Some(Redacted(MasterKey::generate().to_base64()));
        config.database.url = args.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", dir.path().join("data/hooksign.db").display())
        });
        config.log.filter = "warn".into();
        config.auth.rate_per_sec = 1_000_000;
        config.auth.burst = 1_000_000;
        config.delivery.allow_private_networks = true;
        config.delivery.default_endpoint_max_in_flight = 64;
        hooksign::telemetry::init_logging(config.log.format, &config.log.filter);

        let app = App::build(config).await?;
        let base = format!("http://{}", app.local_addr()?);
        let operator =
            std::fs::read_to_string(app.operator_key_file.clone().expect("fresh database"))?
                .trim()
                .to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        (base, operator, Some(stop), Some(daemon))
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let merchant: Value = client
        .post(format!("{base}/v1/merchants"))
        .bearer_auth(&operator)
        .json(&json!({ "name": "load" }))
        .send()
        .await?
        .json()
        .await?;
    let token = merchant["api_keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["mode"] == "test"))
        .and_then(|k| k["token"].as_str())
        .expect("a test key")
        .to_owned();

    if let Some(seconds) = args.api_bench {
        let hello = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hello_url = format!("http://{}/", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, hello).await });
        let keys_url = format!("{base}/v1/api-keys");
        let api = hammer(&client, &keys_url, Some(&token), args.concurrency, seconds).await;
        let bare = hammer(&client, &hello_url, None, args.concurrency, seconds).await;
        // The daemon's own middleware (request id, metrics, log line) without authentication or
        // a database read: where the rest of the gap is.
        let health_url = format!("{base}/healthz");
        let health = hammer(&client, &health_url, None, args.concurrency, seconds).await;
        let report = json!({ "api_keys_per_sec": api, "hello_per_sec": bare, "healthz_per_sec": health, "ratio": api / bare, "concurrency": args.concurrency });
        println!("{report}");
        eprintln!(
            "GET /v1/api-keys: {api:.0}/s; hello: {bare:.0}/s; ratio {:.2}; daemon /healthz: {health:.0}/s",
            api / bare
        );
        shut_down(stop, daemon).await;
        return Ok(());
    }

    if let Some(duration_secs) = args.duration {
        let database = match (&args.database_url, &args.target, &args.data_dir) {
            (Some(url), _, _) => soak::Database::Postgres(url.clone()),
            (None, None, _) => soak::Database::Directory(dir.path().join("data")),
            (None, Some(_), Some(data_dir)) => soak::Database::Directory(data_dir.clone()),
            (None, Some(_), None) => soak::Database::Unknown,
        };
        let plan = soak::Plan {
            duration_secs,
            rate: args.rate.unwrap_or(1000),
            sample_secs: args.sample_secs.max(1),
            endpoints: args.endpoints,
            concurrency: args.concurrency,
            rotation_pending: args.rotation_pending,
            pid: measured,
            database,
        };
        let report = soak::run(&client, &base, &token, &plan).await?;
        println!("{report}");
        shut_down(stop, daemon).await;
        return Ok(());
    }

    let arrivals: Arrivals = Arc::default();
    let receiver = axum::Router::new()
        .fallback(receive)
        .with_state(arrivals.clone());
    add_receivers(
        &client,
        &base,
        &token,
        receiver,
        args.endpoints,
        args.rotation_pending,
    )
    .await?;

    // A 1 KiB event: the payload is padded so the whole envelope is about 1,024 bytes.
    let padding = "x".repeat(860);
    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let cpu_before = cpu_seconds(measured);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut pace = args
        .rate
        .map(|rate| tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64)));
    let mut tasks = Vec::with_capacity(args.events);
    for n in 0..args.events {
        if Instant::now() > deadline {
            break;
        }
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let permit = gate.clone().acquire_owned().await?;
        let (client, base, token, accepted, padding) = (
            client.clone(),
            base.clone(),
            token.clone(),
            accepted.clone(),
            padding.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = json!({ "type": "load.test", "payload": { "n": n, "order": "ord_load", "padding": padding } });
            if let Ok(response) = client.post(format!("{base}/v1/events")).bearer_auth(&token).json(&body).send().await {
                let at = Instant::now();
                if response.status() == 202 {
                    if let Ok(value) = response.json::<Value>().await {
                        accepted.lock().unwrap().insert(value["id"].as_str().unwrap_or_default().to_owned(), at);
                    }
                }
            }
            drop(permit);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let accepted_count = accepted.lock().unwrap().len();
    let expected = accepted_count * args.endpoints;
    let mut peak_rss_kib = proc_status(measured, "VmRSS:").unwrap_or(0);
    loop {
        let received: usize = arrivals.lock().unwrap().values().map(Vec::len).sum();
        peak_rss_kib = peak_rss_kib.max(proc_status(measured, "VmRSS:").unwrap_or(0));
        if received >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(measured) - cpu_before;

    let accepted = accepted.lock().unwrap().clone();
    let arrivals = arrivals.lock().unwrap().clone();
    let mut latencies_ms: Vec<f64> = Vec::new();
    let mut last_arrival = started;
    for (id, accepted_at) in accepted.iter() {
        for arrived in arrivals.get(id).map(Vec::as_slice).unwrap_or(&[]) {
            // A delivery can arrive before the 202 is read by the client: count that as 0.
            latencies_ms.push(
                arrived
                    .saturating_duration_since(*accepted_at)
                    .as_secs_f64()
                    * 1000.0,
            );
            last_arrival = last_arrival.max(*arrived);
        }
    }
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let delivered = latencies_ms.len();
    let delivery_secs = last_arrival.duration_since(started).as_secs_f64();
    let report = json!({
        "database": if args.database_url.is_some() { "postgres" } else { "sqlite" },
        "events_posted": args.events,
        "events_accepted": accepted_count,
        "endpoints": args.endpoints,
        "rotation_pending": args.rotation_pending,
        "paced_rate": args.rate,
        "concurrency": args.concurrency,
        "events_per_sec_accepted": accepted_count as f64 / ingest_secs,
        "deliveries_expected": expected,
        "deliveries_received": delivered,
        "deliveries_per_sec": delivered as f64 / delivery_secs.max(f64::EPSILON),
        "latency_ms": {
            "p50": percentile(&latencies_ms, 0.50),
            "p90": percentile(&latencies_ms, 0.90),
            "p99": percentile(&latencies_ms, 0.99),
            "max": latencies_ms.last().copied().unwrap_or(f64::NAN),
        },
        "peak_rss_mib": peak_rss_kib as f64 / 1024.0,
        "cpu_seconds": cpu,
        "wall_seconds": total_secs,
        "measured_process": if measured.is_some() { "the daemon" } else { "this process: daemon, receivers and client" },
    });
    println!("{report}");
    eprintln!(
        "{accepted_count} events accepted at {:.0}/s; {delivered}/{expected} deliveries at {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; peak RSS {:.1} MiB, CPU {:.1} s over {:.1} s ({})",
        report["events_per_sec_accepted"].as_f64().unwrap_or(0.0),
        report["deliveries_per_sec"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
        report["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
        report["latency_ms"]["max"].as_f64().unwrap_or(f64::NAN),
        report["peak_rss_mib"].as_f64().unwrap_or(0.0),
        cpu,
        total_secs,
        if measured.is_some() { "the daemon" } else { "whole process" },
    );
    shut_down(stop, daemon).await;
    Ok(())
}

/// Starts `count` loopback receivers serving `router`, each behind an endpoint of the merchant
/// `token` belongs to (`max_in_flight` 64), and initiates a rotation if `rotation_pending`.
async fn add_receivers(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    router: axum::Router,
    count: usize,
    rotation_pending: bool,
) -> anyhow::Result<()> {
    for _ in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let router = router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let created = client
            .post(format!("{base}/v1/endpoints"))
            .bearer_auth(token)
            .json(&json!({ "url": url, "max_in_flight": 64 }))
            .send()
            .await?;
        anyhow::ensure!(
            created.status() == 201,
            "endpoint: {}",
            created.text().await?
        );
    }
    if rotation_pending {
        client
            .post(format!("{base}/v1/signing-secret/initiate"))
            .bearer_auth(token)
            .send()
            .await?;
    }
    Ok(())
}

/// Whether a base URL points at this machine's loopback interface.
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Stops the in-process daemon, if this run started one.
async fn shut_down(
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    daemon: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
) {
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    if let Some(daemon) = daemon {
        let _ = daemon.await;
    }
}
