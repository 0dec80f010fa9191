//! PostgreSQL going away mid-flood, through [`FaultProxy`]: every answer is a 202 that is
//! durable or a 503 `database_unavailable` with `Retry-After`, `/readyz` says not ready while
//! the database is gone and ready once it is back, the daemon recovers without a restart, and
//! every accepted event reaches the receiver (again only under its own delivery id). Also a
//! slow network (latency on every packet) that changes nothing but speed.
//!
//! The SQLite disk faults are in `disk_faults.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::endpoint;
use crate::fault_proxy::{upstream_of, url_through, FaultProxy};
use crate::helpers::{skip, spawn_app_with, wait_until, Backend, TestApp};
use crate::receiver::Receiver;

/// The daemon on PostgreSQL through a fresh proxy, failing fast (2 s for a connection) and
/// without rate limits in the way of a flood; `None` where PostgreSQL is not configured
/// outside CI.
async fn app_through_proxy() -> Option<(TestApp, FaultProxy)> {
    let Ok(url) = std::env::var("HOOKSIGN_TEST_DATABASE_URL") else {
        skip(
            "PostgreSQL fault tests",
            "HOOKSIGN_TEST_DATABASE_URL is not set",
        );
        return None;
    };
    let proxy = FaultProxy::start(upstream_of(&url).await).await;
    let through = proxy.addr;
    let app = spawn_app_with(Backend::Postgres, |config| {
        config.database.url = url_through(&config.database.url, through);
        config.database.acquire_timeout_secs = 2;
        config.auth.rate_per_sec = 100_000;
        config.auth.burst = 100_000;
    })
    .await?;
    Some((app, proxy))
}

/// What the flood's requests were answered.
#[derive(Default)]
struct Tally {
    /// Ids of the events answered 202.
    accepted: Vec<String>,
    /// 503 `database_unavailable` with `Retry-After`.
    unavailable: usize,
    /// Anything else, described.
    wrong: Vec<String>,
}

/// Posts events from `posters` tasks until `stop` (at most `per_poster` each).
fn flood(
    app: &TestApp,
    token: &str,
    posters: usize,
    per_poster: usize,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        // A hang guard, not a timed assertion: a request held this long is a failure.
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (0..posters)
        .map(|poster| {
            let (client, stop, tally) = (client.clone(), stop.clone(), tally.clone());
            let url = format!("{}/v1/events", app.base);
            let token = token.to_owned();
            tokio::spawn(async move {
                for n in 0..per_poster {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let body =
                        json!({ "type": "order.created", "payload": { "poster": poster, "n": n } });
                    let answer = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    let outcome = match answer {
                        Ok(response) => classify(response).await,
                        Err(err) => Err(format!("no answer: {err}")),
                    };
                    let mut tally = tally.lock().unwrap();
                    match outcome {
                        Ok(Some(id)) => tally.accepted.push(id),
                        Ok(None) => tally.unavailable += 1,
                        Err(wrong) => tally.wrong.push(wrong),
                    }
                }
            })
        })
        .collect()
}

/// `Some(event id)` for a 202, `None` for a 503 `database_unavailable` with `Retry-After`,
/// and a description of anything else.
async fn classify(response: reqwest::Response) -> Result<Option<String>, String> {
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        202 => body["id"]
            .as_str()
            .map(|id| Some(id.to_owned()))
            .ok_or_else(|| format!("202 without an id: {body}")),
        503 if body["error"]["code"] == "database_unavailable" && retry_after => Ok(None),
        _ => Err(format!("{status} (Retry-After: {retry_after}): {body}")),
    }
}

async fn readyz(app: &TestApp) -> u16 {
    app.request(Method::GET, "/readyz")
        .send()
        .await
        .expect("readyz answers")
        .status()
        .as_u16()
}

/// Waits until the flood has had `count` more events accepted.
async fn accepted_more(tally: &Arc<Mutex<Tally>>, count: usize, what: &str) {
    let from = tally.lock().unwrap().accepted.len();
    wait_until(what, Duration::from_secs(60), || async {
        (tally.lock().unwrap().accepted.len() >= from + count).then_some(())
    })
    .await;
}

/// Event id → the delivery ids the receiver saw it under.
fn seen_by(receiver: &Receiver) -> HashMap<String, HashSet<String>> {
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    for request in receiver.received() {
        let event = request.header("x-hooksign-event-id").unwrap_or_default();
        let delivery = request.header("x-hooksign-delivery-id").unwrap_or_default();
        seen.entry(event.to_owned())
            .or_default()
            .insert(delivery.to_owned());
    }
    seen
}

/// Waits until the receiver has seen every event in `accepted`. A claim whose answer was
/// lost in the cut keeps its lease until the lease runs out (at-least-once): if some are
/// still missing after a while, the daemon's clock is moved past the lease once.
async fn all_received(app: &TestApp, receiver: &Receiver, accepted: &[String]) {
    let missing = || {
        let seen = seen_by(receiver);
        accepted.iter().filter(|id| !seen.contains_key(*id)).count()
    };
    for _ in 0..300 {
        if missing() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lease = app.config.delivery.lease_secs as i64;
    let leased = app
        .count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL AND attempts = 0")
        .await;
    eprintln!(
        "{} accepted events not received yet ({leased} deliveries leased but never sent); \
         moving time past the lease",
        missing()
    );
    app.clock.advance(chrono::Duration::seconds(lease + 1));
    wait_until(
        "the receiver to see every accepted event",
        Duration::from_secs(60),
        || async {
            app.state.delivery.wake();
            (missing() == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_going_away_mid_flood_loses_no_accepted_event() {
    let Some((app, proxy)) = app_through_proxy().await else {
        return;
    };
    let merchant = app.create_merchant("Outage").await;
    let receiver = Receiver::start().await;
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": receiver.url, "max_in_flight": 20 }),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let posters = flood(&app, &merchant.test_token, 12, 2_000, &stop, &tally);
    accepted_more(&tally, 60, "events accepted before the outage").await;

    // The database goes away: every connection is reset and new ones are refused for 5 s
    // (longer than the 2 s a request waits for a connection).
    proxy.cut_all();
    proxy.refuse_for(Duration::from_secs(5));
    let mut during = Vec::new();
    while proxy.refusing() {
        during.push(readyz(&app).await);
    }
    assert!(
        during.contains(&503),
        "/readyz said not ready during the outage: {during:?}"
    );
    wait_until(
        "/readyz ready again once the database is back",
        Duration::from_secs(30),
        || async { (readyz(&app).await == 200).then_some(()) },
    )
    .await;
    // Recovered without a restart: events are accepted again.
    accepted_more(&tally, 60, "events accepted after the outage").await;
    stop.store(true, Ordering::SeqCst);
    for poster in posters {
        poster.await.unwrap();
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!(
        "outage flood: {} accepted, {} answered 503 database_unavailable, /readyz during: {during:?}",
        tally.accepted.len(),
        tally.unavailable
    );
    assert!(
        tally.wrong.is_empty(),
        "answers other than 202 or 503 database_unavailable with Retry-After: {:?}",
        &tally.wrong[..tally.wrong.len().min(10)]
    );
    assert!(
        tally.unavailable > 0,
        "no request was refused during the outage"
    );
    // Every 202 is durable: the event is stored, and it reaches the receiver, only ever
    // under its own single delivery id.
    let ids: Vec<String> = tally.accepted.iter().map(|id| format!("'{id}'")).collect();
    let stored = app
        .count(&format!(
            "SELECT COUNT(*) FROM events WHERE id IN ({})",
            ids.join(",")
        ))
        .await;
    assert_eq!(
        stored,
        tally.accepted.len() as i64,
        "accepted events stored"
    );
    all_received(&app, &receiver, &tally.accepted).await;
    for (event, deliveries) in seen_by(&receiver) {
        assert_eq!(
            deliveries.len(),
            1,
            "event {event} arrived under several delivery ids: {deliveries:?}"
        );
    }
    // Outcomes held during the outage were written once it was back.
    wait_until(
        "every delivery recorded as delivered",
        Duration::from_secs(60),
        || async {
            app.state.delivery.wake();
            let open = app
                .count("SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'")
                .await;
            (open == 0).then_some(())
        },
    )
    .await;
    // An authenticated request after the outage is still authenticated (no 401 was cached).
    let response = app
        .authed(Method::GET, "/v1/events?limit=1", &merchant.test_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_503_not_401_for_a_valid_key() {
    let Some((app, proxy)) = app_through_proxy().await else {
        return;
    };
    let merchant = app.create_merchant("Key lookup").await;
    proxy.cut_all();
    proxy.refuse_for(Duration::from_secs(8));
    // The key lookup fails: that is not an unknown key.
    let response = app
        .authed(Method::GET, "/v1/endpoints", &merchant.test_token)
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().contains_key("retry-after"),
        "Retry-After"
    );
    crate::helpers::assert_error(response, 503, "api_error", "database_unavailable").await;
    assert_eq!(readyz(&app).await, 503);
    wait_until("the database back", Duration::from_secs(30), || async {
        (readyz(&app).await == 200).then_some(())
    })
    .await;
    let response = app
        .authed(Method::GET, "/v1/endpoints", &merchant.test_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the same key works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_network_to_postgres_changes_nothing_but_speed() {
    let Some((app, proxy)) = app_through_proxy().await else {
        return;
    };
    let merchant = app.create_merchant("Slow network").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    // 30 ms on every chunk each way: a query round trip takes at least 60 ms.
    proxy.set_latency(Duration::from_millis(30));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    for poster in flood(&app, &merchant.test_token, 8, 5, &stop, &tally) {
        poster.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    assert!(tally.wrong.is_empty(), "{:?}", tally.wrong);
    assert_eq!(
        tally.unavailable, 0,
        "a slow database is not an unavailable one"
    );
    assert_eq!(tally.accepted.len(), 40);
    assert_eq!(readyz(&app).await, 200);
    all_received(&app, &receiver, &tally.accepted).await;
    assert!(proxy.connections() > 0, "the daemon went through the proxy");
}
