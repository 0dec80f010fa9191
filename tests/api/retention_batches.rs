//! Retention in batches (issue 15): a deleted endpoint is gone at once for the API and the
//! queue, and its long history goes in batches with the next pass, touching nothing else;
//! `hooksign prune` runs a pass, and with `--dry-run` prints what it would remove and changes
//! nothing. Shares the set-up of `retention.rs`.

use reqwest::Method;
use serde_json::json;

use crate::delivery::{endpoint, send_event};
use crate::helpers::{assert_error, engine_settled, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;
use crate::retention::{count, hooksign_cli, settled, NOWHERE};

on_both_stores!(
    configure = crate::retention::by_hand;
    a_deleted_endpoint_goes_at_once_for_the_api_and_its_history_in_batches,
    prune_dry_run_changes_nothing_and_prune_removes,
);

/// Waits until no claim is held in memory or in flight (claims taken before a delete may
/// still be sent; none after it).
async fn drained(app: &TestApp) {
    crate::helpers::wait_until(
        "no claim queued or in flight",
        std::time::Duration::from_secs(60),
        || async {
            (app.state.delivery.queued_claims() == 0 && app.state.delivery.in_flight() == 0)
                .then_some(())
        },
    )
    .await;
    engine_settled(app).await;
}

async fn a_deleted_endpoint_goes_at_once_for_the_api_and_its_history_in_batches(app: TestApp) {
    let merchant = app.create_merchant("Long history").await;
    let other = app.create_merchant("Bystander").await;
    let receiver = Receiver::start().await;
    let doomed = endpoint(&app, &merchant.test_token, json!({ "url": NOWHERE })).await;
    let doomed = doomed["id"].as_str().unwrap().to_owned();
    let kept = endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": receiver.url, "event_types": ["order.refunded"] }),
    )
    .await;
    let kept = kept["id"].as_str().unwrap().to_owned();
    endpoint(&app, &other.test_token, json!({ "url": receiver.url })).await;
    // 2,000 events, 25 requests at a time (ingest shares transactions between them).
    for wave in 0..80 {
        let mut senders = tokio::task::JoinSet::new();
        for n in 0..25 {
            let request = app
                .authed(Method::POST, "/v1/events", &merchant.test_token)
                .json(&json!({ "type": "order.paid", "payload": { "wave": wave, "n": n } }));
            senders.spawn(async move { request.send().await.unwrap().status() });
        }
        while let Some(status) = senders.join_next().await {
            assert_eq!(status.unwrap(), 202);
        }
    }
    for _ in 0..3 {
        send_event(&app, &merchant.test_token, "order.refunded", json!({})).await;
    }
    send_event(&app, &other.test_token, "order.paid", json!({})).await;
    let of = |endpoint: &str| {
        format!("SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{endpoint}'")
    };
    assert_eq!(count(&app, &of(&doomed)).await, 2_003);

    let deleted = app
        .authed(
            Method::DELETE,
            &format!("/v1/endpoints/{doomed}"),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = app
        .authed(
            Method::GET,
            &format!("/v1/endpoints/{doomed}"),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "invalid_request", "resource_missing").await;
    let listed = crate::helpers::get_ok(&app, &merchant.test_token, "/v1/endpoints").await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![kept.as_str()]);
    // The history is still there: the DELETE did not remove it in its own transaction.
    assert!(count(&app, &of(&doomed)).await > 0);
    drained(&app).await;
    // No new delivery and no further claim for it.
    send_event(&app, &merchant.test_token, "order.paid", json!({})).await;
    let untried = format!(
        "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{doomed}' AND attempts = 0 AND leased_by IS NULL"
    );
    let waiting = count(&app, &untried).await;
    drained(&app).await;
    assert_eq!(count(&app, &untried).await, waiting);
    assert_eq!(count(&app, &of(&doomed)).await, 2_003);

    let kept_before = count(&app, &of(&kept)).await;
    let others_before = count(
        &app,
        &format!(
            "SELECT COUNT(*) FROM deliveries WHERE merchant_id = '{}'",
            other.id
        ),
    )
    .await;
    let doomed_attempts = count(
        &app,
        &format!(
            "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.endpoint_id = '{doomed}'"
        ),
    )
    .await;
    let events_before = count(&app, "SELECT COUNT(*) FROM events").await;
    let pages_before = file_pages(&app).await;
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!(pruned.deliveries, 2_003, "{pruned:?}");
    assert_eq!(pruned.delivery_attempts, doomed_attempts as u64);
    assert_eq!(pruned.endpoints, 1);
    assert_eq!(count(&app, &of(&doomed)).await, 0);
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM endpoints WHERE id = '{doomed}'")
        )
        .await,
        0
    );
    assert_eq!(count(&app, &of(&kept)).await, kept_before);
    assert_eq!(kept_before, 3);
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) FROM deliveries WHERE merchant_id = '{}'",
                other.id
            ),
        )
        .await,
        others_before
    );
    // Events stay for the window (a new endpoint may be backfilled from them).
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM events").await,
        events_before
    );
    // SQLite gave the freed pages back to the file system.
    if let Some(before) = pages_before {
        assert_eq!(count(&app, "PRAGMA freelist_count").await, 0);
        let after = file_pages(&app).await.unwrap();
        assert!(after < before, "{before} → {after} pages");
    }
}

/// SQLite: the database file's size in pages (`None` on PostgreSQL).
async fn file_pages(app: &TestApp) -> Option<i64> {
    match app.backend {
        crate::helpers::Backend::Sqlite => Some(count(app, "PRAGMA page_count").await),
        crate::helpers::Backend::Postgres => None,
    }
}

async fn table_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "deliveries",
        "delivery_attempts",
        "events",
        "audit_events",
        "endpoints",
    ] {
        counts.push(count(app, &format!("SELECT COUNT(*) FROM {table}")).await);
    }
    counts
}

async fn prune_dry_run_changes_nothing_and_prune_removes(app: TestApp) {
    let merchant = app.create_merchant("Command line").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    endpoint(&app, &merchant.test_token, json!({ "url": NOWHERE })).await;
    for n in 0..2 {
        send_event(&app, &merchant.test_token, "order.paid", json!({ "n": n })).await;
    }
    settled(&app, &merchant.id).await;
    // The command runs on the system clock: windows of about a second, and a second passes.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let second = [
        ("HOOKSIGN_RETENTION__DELIVERED_DAYS", "0.00001"),
        ("HOOKSIGN_RETENTION__FAILED_DAYS", "0.00001"),
    ];
    let before = table_counts(&app).await;
    let dry = hooksign_cli(&app, &["prune", "--dry-run"], &second);
    let out = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("would remove"), "{out}");
    for line in [
        "deliveries: 4",
        "delivery_attempts: 4",
        "events: 2",
        "audit_events: 0",
        "endpoints: 0",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
    assert_eq!(
        table_counts(&app).await,
        before,
        "the dry run changed nothing"
    );

    let run = hooksign_cli(&app, &["prune"], &second);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{out}");
    assert!(out.contains("removed"), "{out}");
    assert!(out.lines().any(|l| l == "deliveries: 4"), "{out}");
    assert!(out.lines().any(|l| l == "events: 2"), "{out}");
    let after = table_counts(&app).await;
    assert_eq!(&after[..3], &[0, 0, 0], "{after:?}");
    assert_eq!(
        &after[3..],
        &before[3..],
        "audit entries and endpoints stay"
    );
}
