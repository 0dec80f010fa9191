//! Nothing lost, nothing doubled: `kill -9` mid-flood, two daemons sharing one queue, graceful
//! shutdown giving leases back, endpoints disabled after failing for too long, and key changes
//! seen at once by another daemon process (through the SQLite key cache's shared generation).

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration as StdDuration;

use chrono::Duration;
use hooksign::config::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::api_keys::created;
use crate::delivery::{endpoint, first_delivery, send_event};
use crate::helpers::{
    assert_error, assert_not_claimed, enable_endpoint, engine_settled, get_ok, spawn_app_with,
    wait_until, Backend, DaemonProcess, TestApp,
};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    graceful_shutdown_finishes_in_flight_work_and_releases_leases,
    an_endpoint_failing_for_too_long_is_disabled,
    an_accepted_event_survives_kill_9,
    a_key_change_in_one_process_applies_at_once_in_another,
    a_deactivated_key_is_refused_at_once_by_another_instance,
    a_disabled_merchant_is_refused_at_once_by_another_instance,
);

mod two_daemons_share_the_queue_without_doubling {
    use crate::helpers::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::two_daemons_share_the_queue_without_doubling(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::two_daemons_share_the_queue_without_doubling(Backend::Postgres).await;
    }
}

/// Each daemon claims one delivery at a time and has at most two in flight, to receivers that
/// take 50 ms to answer: either daemon alone needs well over a second for the queue below,
/// while the other looks for work every 100 ms (and is woken by its own ingests at once).
fn one_claim_at_a_time(config: &mut Config) {
    config.delivery.batch_size = 1;
    config.delivery.max_in_flight = 2;
}

async fn two_daemons_share_the_queue_without_doubling(backend: Backend) {
    let Some(mut app) = spawn_app_with(backend, one_claim_at_a_time).await else {
        return;
    };
    let merchant = app.create_merchant("Shared queue").await;
    // Who sent what: the second daemon sends through an egress proxy, and that "proxy" is a
    // receiver of its own. What reaches `first` came from the first daemon, what reaches
    // `second` from the second.
    let (first, second) = (Receiver::start().await, Receiver::start().await);
    for receiver in [&first, &second] {
        receiver.set_delay(StdDuration::from_millis(50));
    }
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": first.url, "max_in_flight": 20 }),
    )
    .await;
    let proxy = second.url.trim_end_matches("/hook").to_owned();
    let mut other = app
        .another_instance_with(|config| {
            one_claim_at_a_time(config);
            config.delivery.egress_proxy = Some(proxy);
        })
        .await;
    let mut ids = HashSet::new();
    for n in 0..60 {
        // Alternate the daemon that ingests; both deliver.
        let base = if n % 2 == 0 {
            app.base.clone()
        } else {
            other.base.clone()
        };
        let response = app
            .client
            .post(format!("{base}/v1/events"))
            .bearer_auth(&merchant.test_token)
            .json(&json!({ "type": "order.created", "payload": { "n": n } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        ids.insert(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    wait_until(
        "all 60 deliveries recorded as delivered",
        StdDuration::from_secs(60),
        || async {
            let delivered = app
                .count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
                .await;
            (delivered == 60).then_some(())
        },
    )
    .await;
    // Both stopped gracefully: nothing is in flight any more that could still arrive.
    other.stop().await;
    app.stop().await;
    let (by_first, by_second) = (first.received(), second.received());
    assert!(
        !by_first.is_empty() && !by_second.is_empty(),
        "both daemons delivered: {} and {}",
        by_first.len(),
        by_second.len()
    );
    let all: Vec<_> = by_first.iter().chain(&by_second).collect();
    assert_eq!(all.len(), 60, "no delivery was sent twice");
    let deliveries: HashSet<_> = all
        .iter()
        .map(|r| r.header("x-hooksign-delivery-id").unwrap().to_owned())
        .collect();
    assert_eq!(deliveries.len(), 60);
    let events: HashSet<_> = all
        .iter()
        .map(|r| r.header("x-hooksign-event-id").unwrap().to_owned())
        .collect();
    assert_eq!(events, ids);
}

async fn graceful_shutdown_finishes_in_flight_work_and_releases_leases(mut app: TestApp) {
    let merchant = app.create_merchant("Shutdown").await;
    let receiver = Receiver::start().await;
    receiver.hold();
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": receiver.url, "max_in_flight": 2 }),
    )
    .await;
    for n in 0..6 {
        send_event(
            &app,
            &merchant.test_token,
            "order.created",
            json!({ "n": n }),
        )
        .await;
    }
    wait_until(
        "two deliveries held at the receiver",
        StdDuration::from_secs(15),
        || async { (receiver.in_flight() == 2).then_some(()) },
    )
    .await;
    // The shutdown begins while both are held: the daemon stops accepting connections (the
    // same signal stops the delivery workers), and only then are the two answered.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let release_once_stopping = async {
        wait_until(
            "the daemon to stop accepting connections",
            StdDuration::from_secs(15),
            || async {
                tokio::net::TcpStream::connect(&addr)
                    .await
                    .is_err()
                    .then_some(())
            },
        )
        .await;
        receiver.release();
    };
    tokio::join!(app.stop(), release_once_stopping);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL")
            .await,
        0,
        "no lease left behind"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered' AND attempts = 1")
            .await,
        2,
        "the two deliveries in flight at the shutdown finished and were recorded"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts = 0 \
             AND lease_until IS NULL"
        )
        .await,
        4,
        "the rest were given back untried"
    );
    assert_eq!(
        receiver.received().len(),
        2,
        "only the two in flight were sent"
    );
    let (app, _) = app.restart().await;
    // Deliveries put back while their endpoint is busy are due a moment later: let the
    // (manual) clock move as a real one would.
    for _ in 0..150 {
        if receiver.received().len() >= 6 {
            break;
        }
        app.clock.advance(Duration::milliseconds(500));
        app.state.delivery.wake();
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    receiver.wait_for(6).await;
    wait_until(
        "the rest delivered after the restart",
        StdDuration::from_secs(15),
        || async {
            let delivered = app
                .count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
                .await;
            (delivered == 6).then_some(())
        },
    )
    .await;
}

async fn an_endpoint_failing_for_too_long_is_disabled(app: TestApp) {
    let merchant = app.create_merchant("Unhealthy").await;
    let receiver = Receiver::start().await;
    receiver.script(&[500, 500, 500]);
    let ep = endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let id = ep["id"].as_str().unwrap();
    let event = send_event(&app, &merchant.test_token, "order.created", json!({})).await;
    let delivery = first_delivery(&app, &merchant.test_token, &event).await;
    receiver.wait_for(1).await;
    // The failed attempt is recorded and its retry scheduled before the clock moves on.
    wait_until(
        "the first failed attempt recorded",
        StdDuration::from_secs(15),
        || async {
            let recorded = app
                .count(
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts = 1 \
                     AND leased_by IS NULL",
                )
                .await;
            (recorded == 1).then_some(())
        },
    )
    .await;
    // Five days later the retry fails too: the endpoint has failed continuously long enough.
    app.clock.advance(Duration::days(5));
    app.state.delivery.wake();
    receiver.wait_for(2).await;
    let path = format!("/v1/endpoints/{id}");
    let disabled = wait_until(
        "the endpoint disabled",
        StdDuration::from_secs(15),
        || async {
            let shown = get_ok(&app, &merchant.test_token, &path).await;
            (shown["enabled"] == false).then_some(shown)
        },
    )
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed since"),
        "{disabled}"
    );
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    assert!(chain.iter().any(|e| e.action == "endpoint.disable"));
    // Its pending deliveries wait, paused (not lost), until it is re-enabled.
    let paused = app
        .count("SELECT COUNT(*) FROM deliveries WHERE status = 'paused'")
        .await;
    assert_eq!(paused, 1);
    // A day later its retry is long due; claim passes that saw that clock leave it alone.
    app.clock.advance(Duration::days(1));
    engine_settled(&app).await;
    assert_not_claimed(&app, &delivery, 2, "a disabled endpoint gets nothing").await;
    assert_eq!(
        receiver.received().len(),
        2,
        "a disabled endpoint gets nothing"
    );
    enable_endpoint(&app, &merchant.test_token, id).await;
    receiver.wait_for(3).await;
    let bad = app
        .authed(
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            &merchant.test_token,
        )
        .json(&json!({ "enabled": "yes" }))
        .send()
        .await
        .unwrap();
    assert_error(bad, 422, "invalid_request", "invalid_body").await;
}

/// The real binary on the app's database, in `dir`, on a port of its own choosing.
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
        .env("HOOKSIGN_DELIVERY__LEASE_SECS", "2")
        .env("HOOKSIGN_DELIVERY__DEFAULT_TIMEOUT_MS", "1000")
        .env("HOOKSIGN_DELIVERY__POLL_INTERVAL_MS", "100")
        // Warnings, and the line saying which port it bound.
        .env("HOOKSIGN_LOG__FILTER", "warn,hooksign::server=info");
    DaemonProcess::start(command)
}

async fn an_accepted_event_survives_kill_9(mut app: TestApp) {
    // The in-process daemon only prepared the database; the real binary does the work.
    let merchant = app.create_merchant("Crash").await;
    let receiver = Receiver::start().await;
    receiver.set_delay(StdDuration::from_millis(20));
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start_daemon(&app, dir.path());
    let base = daemon.base();
    // Flood from a task while the daemon is killed under it.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let flood = {
        let accepted = accepted.clone();
        let token = merchant.test_token.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..10_000 {
                let sent = client
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&token)
                    .json(&json!({ "type": "order.created", "payload": { "n": n } }))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 202 => {
                        if let Ok(body) = response.json::<Value>().await {
                            accepted
                                .lock()
                                .unwrap()
                                .insert(body["id"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                    _ => break, // the daemon is gone
                }
            }
        })
    };
    wait_until(
        "60 events accepted by the flood",
        StdDuration::from_secs(30),
        || async { (accepted.lock().unwrap().len() >= 60).then_some(()) },
    )
    .await;
    daemon.child.kill().unwrap(); // SIGKILL, mid-flood, with deliveries in flight
    daemon.child.wait().unwrap();
    flood.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 60);
    assert!(receiver.received().len() < accepted.len() * 2, "sanity");
    let _restarted = start_daemon(&app, dir.path());
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let arrived = receiver.distinct("x-hooksign-event-id");
        let missing = accepted.difference(&arrived).count();
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost after kill -9: {missing} of {}",
            accepted.len()
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

async fn a_key_change_in_one_process_applies_at_once_in_another(app: TestApp) {
    // The real binary and this process serve the same database, each with its own key cache.
    let merchant = app.create_merchant("Two processes").await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(&app, dir.path());
    let other = daemon.base();
    let created = created(&app, &merchant.live_token, "shared").await;
    let (id, token) = (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    );
    let on = |base: &str, path: &str, token: &str| {
        app.client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
    };
    // Both processes have now read (and cached) the key and the list.
    for base in [app.base.as_str(), other.as_str()] {
        assert_eq!(
            on(base, "/v1/api-keys", &token).await.unwrap().status(),
            200
        );
    }
    // A change through the other process is seen here on the next request...
    let renamed = app
        .client
        .patch(format!("{other}/v1/api-keys/{id}"))
        .bearer_auth(&merchant.live_token)
        .json(&json!({ "name": "renamed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let listed: Value = on(&app.base, "/v1/api-keys", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"renamed".to_owned()), "{names:?}");
    // ...and a revocation here is seen there on the next request.
    let revoked = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{id}/revoke"),
            &merchant.live_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_error(
        on(&other, "/v1/api-keys", &token).await.unwrap(),
        401,
        "authentication",
        "api_key_revoked",
    )
    .await;
}

/// `GET /v1/api-keys` with `token` on the daemon at `base`.
async fn list_keys_at(app: &TestApp, base: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{base}/v1/api-keys"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn a_deactivated_key_is_refused_at_once_by_another_instance(app: TestApp) {
    // Each instance has a key cache of its own; only the shared generation links them.
    let merchant = app.create_merchant("Deactivated elsewhere").await;
    let other = app.another_instance().await;
    let key = created(&app, &merchant.live_token, "shared").await;
    let (id, token) = (key["id"].as_str().unwrap(), key["token"].as_str().unwrap());
    for base in [app.base.as_str(), other.base.as_str()] {
        assert_eq!(
            list_keys_at(&app, base, token).await.status(),
            200,
            "{base}"
        );
    }
    let off = app
        .authed(
            Method::PATCH,
            &format!("/v1/api-keys/{id}"),
            &merchant.live_token,
        )
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    assert_error(
        list_keys_at(&app, &other.base, token).await,
        401,
        "authentication",
        "api_key_inactive",
    )
    .await;
    // And back the other way: switched on there, it works here at once.
    let on = app
        .client
        .patch(format!("{}/v1/api-keys/{id}", other.base))
        .bearer_auth(&merchant.live_token)
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), 200);
    assert_eq!(list_keys_at(&app, &app.base, token).await.status(), 200);
}

async fn a_disabled_merchant_is_refused_at_once_by_another_instance(app: TestApp) {
    let merchant = app.create_merchant("Disabled elsewhere").await;
    let other = app.another_instance().await;
    for token in [&merchant.live_token, &merchant.test_token] {
        for base in [app.base.as_str(), other.base.as_str()] {
            assert_eq!(
                list_keys_at(&app, base, token).await.status(),
                200,
                "{base}"
            );
        }
    }
    let path = format!("/v1/merchants/{}", merchant.id);
    let disabled = app
        .operator(Method::PATCH, &path)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    for token in [&merchant.live_token, &merchant.test_token] {
        assert_error(
            list_keys_at(&app, &other.base, token).await,
            401,
            "authentication",
            "merchant_disabled",
        )
        .await;
    }
    let enabled = app
        .client
        .patch(format!("{}{path}", other.base))
        .bearer_auth(&app.operator_token)
        .json(&json!({ "disabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    assert_eq!(
        list_keys_at(&app, &app.base, &merchant.live_token)
            .await
            .status(),
        200,
        "re-enabled there, seen here at once"
    );
}
