//! The soak mode of `loadgen` (`--duration S --rate R`): posts R events per second for S
//! seconds and, every `--sample-secs`, prints one line with what a long run must keep flat:
//! RSS, CPU per delivery, the window's delivery latency (posted → received, p50/p99), the
//! queue depth the daemon reports, and the database's size on disk.
//!
//! Nothing is kept per event: the receivers read the posting time from the event itself, so the
//! load generator's own memory stays flat too (it matters when the daemon runs in-process and
//! the whole process is measured).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// What the soak needs from the command line.
pub struct Plan {
    pub duration_secs: u64,
    pub rate: u64,
    pub sample_secs: u64,
    pub endpoints: usize,
    pub concurrency: usize,
    pub rotation_pending: bool,
    /// Whose RSS and CPU to read (`None`: this process).
    pub pid: Option<u32>,
    /// Where the database's size is read: a SQLite data directory or a PostgreSQL URL.
    pub database: Database,
}

/// Where the database lives, for its size.
pub enum Database {
    Directory(PathBuf),
    Postgres(String),
    Unknown,
}

/// What the receivers saw since the last sample.
struct Window {
    origin: Instant,
    latencies_ms: Mutex<Vec<f64>>,
    received: AtomicU64,
}

/// Counts of the posting side.
#[derive(Default)]
struct Posted {
    accepted: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

async fn receive(State(window): State<Arc<Window>>, body: Bytes) -> &'static str {
    let now = window.origin.elapsed().as_secs_f64() * 1000.0;
    if let Some(sent_us) = sent_us(&body) {
        let latency = (now - sent_us as f64 / 1000.0).max(0.0);
        window.latencies_ms.lock().unwrap().push(latency);
    }
    window.received.fetch_add(1, Ordering::Relaxed);
    "ok"
}

/// The `"sent_us":N` the poster put in the event, wherever the envelope carries it.
fn sent_us(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_us\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Runs the soak against the daemon at `base` with merchant key `token`; returns the report.
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    plan: &Plan,
) -> anyhow::Result<Value> {
    let window = Arc::new(Window {
        origin: Instant::now(),
        latencies_ms: Mutex::default(),
        received: AtomicU64::new(0),
    });
    let receiver = axum::Router::new()
        .fallback(receive)
        .with_state(window.clone());
    super::add_receivers(
        client,
        base,
        token,
        receiver,
        plan.endpoints,
        plan.rotation_pending,
    )
    .await?;
    let pg = match &plan.database {
        Database::Postgres(url) => Some(sqlx::PgPool::connect(url).await?),
        _ => None,
    };

    let posted = Arc::new(Posted::default());
    let poster = tokio::spawn(post_for(
        client.clone(),
        base.to_owned(),
        token.to_owned(),
        plan.rate,
        plan.duration_secs,
        plan.concurrency,
        window.origin,
        posted.clone(),
    ));

    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(plan.sample_secs));
    tick.tick().await;
    let (mut last_cpu, mut last_received) = (super::cpu_seconds(plan.pid), 0u64);
    // Sample through the run and then while the backlog drains (at most two minutes more).
    let stop_at = window.origin + Duration::from_secs(plan.duration_secs + 120);
    loop {
        tick.tick().await;
        let cpu = super::cpu_seconds(plan.pid);
        let received = window.received.load(Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *window.latencies_ms.lock().unwrap());
        latencies.sort_by(|a, b| a.total_cmp(b));
        let in_window = received - last_received;
        let depth = queue_depth(client, base).await;
        let sample = json!({
            "t_secs": window.origin.elapsed().as_secs(),
            "rss_mib": super::proc_status(plan.pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
            "accepted_total": posted.accepted.load(Ordering::Relaxed),
            "received_total": received,
            "deliveries_per_sec": in_window as f64 / plan.sample_secs as f64,
            "cpu_us_per_delivery": if in_window > 0 { (cpu - last_cpu) * 1e6 / in_window as f64 } else { 0.0 },
            "p50_ms": super::percentile(&latencies, 0.50),
            "p99_ms": super::percentile(&latencies, 0.99),
            "queue_depth": depth,
            "database_mib": database_bytes(&plan.database, pg.as_ref()).await as f64 / 1_048_576.0,
        });
        eprintln!("{sample}");
        samples.push(sample);
        (last_cpu, last_received) = (cpu, received);
        let posting_done = poster.is_finished();
        let drained = received >= posted.accepted.load(Ordering::Relaxed) * plan.endpoints as u64;
        if (posting_done && drained) || Instant::now() > stop_at {
            break;
        }
    }
    let _ = poster.await;
    let during: Vec<&Value> = samples
        .iter()
        .filter(|s| s["t_secs"].as_u64().unwrap_or(0) <= plan.duration_secs)
        .collect();
    let series = |field: &str| -> Vec<f64> {
        during
            .iter()
            .filter_map(|s| s[field].as_f64())
            .filter(|v| v.is_finite())
            .collect()
    };
    let range = |values: Vec<f64>| {
        json!({
            "first": values.first(),
            "last": values.last(),
            "min": values.iter().copied().reduce(f64::min),
            "max": values.iter().copied().reduce(f64::max),
        })
    };
    Ok(json!({
        "mode": "soak",
        "rate": plan.rate,
        "duration_secs": plan.duration_secs,
        "endpoints": plan.endpoints,
        "accepted": posted.accepted.load(Ordering::Relaxed),
        "refused": posted.refused.load(Ordering::Relaxed),
        "failed": posted.failed.load(Ordering::Relaxed),
        "received": window.received.load(Ordering::Relaxed),
        "rss_mib": range(series("rss_mib")),
        "p99_ms": range(series("p99_ms")),
        "cpu_us_per_delivery": range(series("cpu_us_per_delivery")),
        "database_mib": range(series("database_mib")),
        "samples": samples,
    }))
}

/// Posts `rate` 1 KiB events per second for `secs` seconds, at most `concurrency` at once.
#[allow(clippy::too_many_arguments)]
async fn post_for(
    client: reqwest::Client,
    base: String,
    token: String,
    rate: u64,
    secs: u64,
    concurrency: usize,
    origin: Instant,
    posted: Arc<Posted>,
) {
    let url = Arc::new(format!("{base}/v1/events"));
    let token = Arc::new(token);
    let gate = Arc::new(Semaphore::new(concurrency));
    let padding = Arc::new("x".repeat(840));
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let until = origin + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < until {
        pace.tick().await;
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let (client, url, token, padding, posted) = (
            client.clone(),
            url.clone(),
            token.clone(),
            padding.clone(),
            posted.clone(),
        );
        n += 1;
        tokio::spawn(async move {
            let sent_us = origin.elapsed().as_micros() as u64;
            let body = json!({ "type": "load.soak", "payload": { "n": n, "sent_us": sent_us, "padding": *padding } });
            let counter = match client
                .post(url.as_str())
                .bearer_auth(token.as_str())
                .json(&body)
                .send()
                .await
            {
                Ok(response) if response.status() == 202 => &posted.accepted,
                Ok(_) => &posted.refused,
                Err(_) => &posted.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Wait for the last requests in flight.
    let _ = gate.acquire_many(concurrency as u32).await;
}

/// `hooksign_delivery_queue_depth` from the daemon's `/metrics`.
async fn queue_depth(client: &reqwest::Client, base: &str) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|line| line.starts_with("hooksign_delivery_queue_depth"))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
}

/// The database's size on disk: every file of a SQLite data directory (the database, its WAL
/// and shared memory), or `pg_database_size` of a PostgreSQL database.
async fn database_bytes(database: &Database, pg: Option<&sqlx::PgPool>) -> u64 {
    match (database, pg) {
        (Database::Directory(dir), _) => std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.metadata().ok())
                    .filter(|meta| meta.is_file())
                    .map(|meta| meta.len())
                    .sum()
            })
            .unwrap_or(0),
        (Database::Postgres(_), Some(pool)) => {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                .fetch_one(pool)
                .await
                .map_or(0, |size| size.max(0) as u64)
        }
        _ => 0,
    }
}
