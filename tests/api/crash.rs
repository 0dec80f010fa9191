//! `kill -9` at random moments (issue 15, item 12): the real binary is killed several times
//! during a flood, with a signing-secret rotation pending and a receiver that fails some first
//! attempts (so retries are due all along), and restarted each time on the same database.
//! At the end every accepted event has reached the receiver, every delivery's attempt count
//! in the API is what the receiver saw for it (give or take one unrecorded resend per kill),
//! and every request carried both signature headers.
//!
//! The kill delays come from a seeded RNG; the seed is printed, and `HOOKSIGN_CRASH_SEED=N`
//! replays a run.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::endpoint;
use crate::helpers::{DaemonProcess, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(every_accepted_event_survives_kill_9_at_random_moments);

/// Leases a killed daemon held are claimed again after this long.
const LEASE_SECS: &str = "3";

/// The real binary on the app's database, in `dir`: retries 1 s apart without jitter, short
/// leases, and no rate limit in the way of the flood.
fn start_daemon(app: &TestApp, dir: &std::path::Path) -> DaemonProcess {
    let master_key = app.config.master_key.as_ref().unwrap().0.clone();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksign"));
    command
        .arg("serve")
        .current_dir(dir)
        .env("HOOKSIGN_DATABASE__URL", &app.config.database.url)
        .env("HOOKSIGN_MASTER_KEY", master_key)
        .env("HOOKSIGN_DATA_DIR", dir.join("data"))
        .env("HOOKSIGN_DELIVERY__ALLOW_PRIVATE_NETWORKS", "true")
        .env("HOOKSIGN_DELIVERY__LEASE_SECS", LEASE_SECS)
        .env("HOOKSIGN_DELIVERY__DEFAULT_TIMEOUT_MS", "1000")
        .env("HOOKSIGN_DELIVERY__POLL_INTERVAL_MS", "100")
        .env(
            "HOOKSIGN_DELIVERY__RETRY_SCHEDULE_SECS",
            "[1, 1, 1, 1, 1, 1, 1, 1]",
        )
        .env("HOOKSIGN_DELIVERY__RETRY_JITTER", "0")
        .env("HOOKSIGN_AUTH__RATE_PER_SEC", "100000")
        .env("HOOKSIGN_AUTH__BURST", "100000")
        .env("HOOKSIGN_LOG__FILTER", "warn,hooksign::server=info");
    DaemonProcess::start(command)
}

/// The seed of this run's kill delays: `HOOKSIGN_CRASH_SEED`, or one drawn now.
fn seed() -> u64 {
    std::env::var("HOOKSIGN_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

/// Posts events to whichever daemon is up (`base`), until `stop`; the ids answered 202.
fn flood(
    base: Arc<Mutex<Option<String>>>,
    token: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<HashSet<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let Some(base) = base.lock().unwrap().clone() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            n += 1;
            let sent = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(&token)
                .json(&json!({ "type": "order.created", "payload": { "n": n } }))
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 202 => {
                    if let Ok(body) = response.json::<Value>().await {
                        let id = body["id"].as_str().unwrap_or_default().to_owned();
                        accepted.lock().unwrap().insert(id);
                    }
                }
                // Killed under the request (or refused while it starts): not accepted.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
}

/// Every delivery of the merchant's test mode, from the API: id → (status, attempts).
async fn deliveries(base: &str, token: &str) -> HashMap<String, (String, u64)> {
    let client = reqwest::Client::new();
    let mut all = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/deliveries?limit=100");
        if let Some(after) = &after {
            url.push_str(&format!("&starting_after={after}"));
        }
        let response = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.unwrap();
        for delivery in page["data"].as_array().unwrap() {
            let id = delivery["id"].as_str().unwrap().to_owned();
            let status = delivery["status"].as_str().unwrap().to_owned();
            all.insert(id.clone(), (status, delivery["attempts"].as_u64().unwrap()));
            after = Some(id);
        }
        if page["has_more"] != true {
            return all;
        }
    }
}

async fn every_accepted_event_survives_kill_9_at_random_moments(mut app: TestApp) {
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kills = rng.gen_range(3..=5);
    let delays: Vec<u64> = (0..kills).map(|_| rng.gen_range(300..1_500)).collect();
    println!(
        "kill -9 schedule: seed {seed} (HOOKSIGN_CRASH_SEED={seed} replays it): {kills} kills after {delays:?} ms"
    );

    // The in-process daemon prepares the database: an endpoint and a pending rotation.
    let merchant = app.create_merchant("Crash").await;
    let token = merchant.test_token.clone();
    let receiver = Receiver::start().await;
    receiver.fail_first_request_of_every(3);
    endpoint(&app, &token, json!({ "url": receiver.url })).await;
    let initiated = app
        .authed(Method::POST, "/v1/signing-secret/initiate", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        initiated.status(),
        200,
        "{}",
        initiated.text().await.unwrap()
    );
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let base = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let flooders: Vec<_> = (0..2)
        .map(|_| flood(base.clone(), token.clone(), stop.clone(), accepted.clone()))
        .collect();
    for delay in &delays {
        let mut daemon = start_daemon(&app, dir.path());
        *base.lock().unwrap() = Some(daemon.base());
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        *base.lock().unwrap() = None;
        daemon.child.kill().unwrap(); // SIGKILL, mid-flood
        daemon.child.wait().unwrap();
    }
    let daemon = start_daemon(&app, dir.path());
    let last = daemon.base();
    *base.lock().unwrap() = Some(last.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for flooder in flooders {
        flooder.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 20,
        "the flood was accepted: {}",
        accepted.len()
    );

    // Everything settles: leases of the killed daemons expire, retries come due.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let arrived = receiver.distinct("x-hooksign-event-id");
        let all = deliveries(&last, &token).await;
        let missing = accepted.difference(&arrived).count();
        let open = all
            .values()
            .filter(|(status, _)| status != "delivered")
            .count();
        if missing == 0 && open == 0 {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: {missing} of {} accepted events never arrived, {open} deliveries not delivered",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let received = receiver.received();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for request in &received {
        let id = request.header("x-hooksign-delivery-id").unwrap_or_default();
        *seen.entry(id.to_owned()).or_default() += 1;
        let (active, pending) = (
            request.header("x-bolt-hmac-sha256"),
            request.header("x-bolt-hmac-sha256-pending"),
        );
        assert!(
            active.is_some_and(|a| !a.is_empty()) && pending.is_some_and(|p| p != active.unwrap()),
            "seed {seed}: {id} was not signed with both secrets: {:?}",
            request.headers
        );
    }
    let mut resent = 0;
    let mut retried = 0;
    for (id, (_, attempts)) in &settled {
        let saw = seen.get(id).copied().unwrap_or(0);
        assert!(
            *attempts <= saw && saw <= attempts + kills as u64,
            "seed {seed}: {id} made {attempts} attempts in the API, the receiver saw {saw} ({kills} kills)"
        );
        resent += saw - attempts;
        retried += u64::from(*attempts > 1);
    }
    assert_eq!(
        seen.keys().filter(|id| !settled.contains_key(*id)).count(),
        0,
        "seed {seed}: the receiver saw deliveries the API does not know"
    );
    assert!(retried > 0, "seed {seed}: no delivery was retried");
    println!(
        "seed {seed}: {} accepted, {} deliveries, {} requests, {retried} retried, {resent} resent after a kill",
        accepted.len(),
        settled.len(),
        received.len()
    );
}
