//! Item 7: unsent deliveries expire after `delivery.max_age_secs`, by the sweep, which also
//! settles what an interrupted pause or resume left.

use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

use super::{listed, wait_for_status};
use crate::delivery::{endpoint, first_delivery, send_event};
use crate::helpers::{enable_endpoint, get_ok, wait_until, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    configure = |config| {
        config.delivery.max_age_secs = 1_200;
        config.delivery.sweep_interval_secs = 1;
    };
    unsent_deliveries_expire_with_the_reason_and_can_be_sent_again,
    the_sweep_settles_deliveries_an_interrupted_pause_or_resume_left,
);

/// After `delivery.max_age_secs` a delivery still failing (pending) and one waiting for its
/// disabled endpoint (paused) are `expired` by the sweep, with the reason; both can be sent
/// again, by retry and by replay, like dead letters.
async fn unsent_deliveries_expire_with_the_reason_and_can_be_sent_again(app: TestApp) {
    let merchant = app.create_merchant("Expiring").await;
    let token = &merchant.test_token;
    // A: answers 503 and asks to be retried in 3000 s, past the 1200 s max age.
    let failing = Receiver::start().await;
    failing.script_with_headers(503, &[("Retry-After", "3000")]);
    let a = endpoint(
        &app,
        token,
        json!({ "url": failing.url, "event_types": ["order.*"] }),
    )
    .await;
    // B: disabled; a backfill gives it a (paused) delivery.
    let waiting = Receiver::start().await;
    let b = endpoint(
        &app,
        token,
        json!({ "url": waiting.url, "event_types": ["invoice.*"], "enabled": false }),
    )
    .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let since = hooksign::clock::rfc3339(app.clock_now() - Duration::seconds(1));
    let order = send_event(&app, token, "order.created", json!({})).await;
    let invoice = send_event(&app, token, "invoice.paid", json!({})).await;
    assert_eq!(invoice["delivery_count"], 0, "{invoice}");
    let a_delivery = first_delivery(&app, token, &order).await;
    let replayed = app
        .authed(Method::POST, &format!("/v1/endpoints/{b_id}/replay"), token)
        .json(&json!({ "since": since }))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(replayed["backfilled"], 1, "{replayed}");
    let paused = listed(&app, token, "paused").await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    let b_delivery = paused[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(paused[0]["endpoint_id"], b_id);
    let first = wait_until("A's first attempt", StdDuration::from_secs(15), || async {
        let shown = get_ok(&app, token, &format!("/v1/deliveries/{a_delivery}")).await;
        (shown["attempts"] == 1).then_some(shown)
    })
    .await;
    assert_eq!(first["status"], "pending", "{first}");

    // Nothing expires before its time.
    app.clock.advance(Duration::seconds(1_100));
    tokio::time::sleep(StdDuration::from_millis(2_500)).await;
    assert!(listed(&app, token, "expired").await.is_empty());
    app.clock.advance(Duration::seconds(101));
    let expired_a = wait_for_status(&app, token, &a_delivery, "expired").await;
    let expired_b = wait_for_status(&app, token, &b_delivery, "expired").await;
    assert_eq!(
        expired_a["last_error"],
        "expired after 20 minutes still failing (last error: server_error)",
        "{expired_a}"
    );
    assert_eq!(
        expired_b["last_error"], "expired after 20 minutes while its endpoint was disabled",
        "{expired_b}"
    );
    let mut expired: Vec<String> = listed(&app, token, "expired")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    expired.sort();
    let mut expected = vec![a_delivery.clone(), b_delivery.clone()];
    expected.sort();
    assert_eq!(expired, expected);
    assert!(listed(&app, token, "paused").await.is_empty());
    // The sweep leaves the index of unsent work.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE merchant_id = '{}' AND (status = 'pending' OR status = 'paused')",
            merchant.id
        ))
        .await,
        0
    );
    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hooksign_deliveries_expired_total "))
        .unwrap_or_else(|| panic!("no expired counter in {metrics}"))
        .parse()
        .unwrap();
    assert!(counted >= 2.0, "{counted}");

    // A is sent again by hand (the receiver answers 200 now) ...
    let retried = app
        .authed(
            Method::POST,
            &format!("/v1/deliveries/{a_delivery}/retry"),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    wait_for_status(&app, token, &a_delivery, "delivered").await;
    // ... and B by a replay of the expired ones: paused while B is disabled, sent once enabled.
    let replay = app
        .authed(Method::POST, &format!("/v1/endpoints/{b_id}/replay"), token)
        .json(&json!({ "status": ["expired"] }))
        .send()
        .await
        .unwrap();
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["requeued"], 1, "{replay}");
    assert_eq!(replay["backfilled"], 0, "{replay}");
    wait_for_status(&app, token, &b_delivery, "paused").await;
    enable_endpoint(&app, token, b_id).await;
    wait_for_status(&app, token, &b_delivery, "delivered").await;
    assert_eq!(waiting.received().len(), 1);
    assert_eq!(failing.received().len(), 2);
    let _ = a_id;
}

/// A pending delivery of a disabled endpoint (as a crash between pause batches, or on
/// PostgreSQL an ingest racing the disable, leaves one) is paused by the next sweep; a paused
/// delivery of an enabled endpoint is resumed and delivered.
async fn the_sweep_settles_deliveries_an_interrupted_pause_or_resume_left(app: TestApp) {
    let merchant = app.create_merchant("Sweep settles").await;
    let token = &merchant.test_token;
    let event = send_event(&app, token, "order.created", json!({})).await;
    assert_eq!(event["delivery_count"], 0, "{event}");
    let disabled_receiver = Receiver::start().await;
    let disabled = endpoint(
        &app,
        token,
        json!({ "url": disabled_receiver.url, "enabled": false }),
    )
    .await;
    let enabled_receiver = Receiver::start().await;
    let enabled = endpoint(&app, token, json!({ "url": enabled_receiver.url })).await;
    let now = app.clock_now().timestamp_millis();
    let (stuck_pending, stuck_paused) = (
        "dlv_01JD5Q3Z8X9V0W1Y0000000001",
        "dlv_01JD5Q3Z8X9V0W1Y0000000002",
    );
    for (id, ep, status) in [
        (stuck_pending, &disabled, "pending"),
        (stuck_paused, &enabled, "paused"),
    ] {
        app.execute(&format!(
            "INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ('{id}', '{}', '{}', '{}', 'test', '{status}', \
             0, {now}, {now}, {now})",
            event["id"].as_str().unwrap(),
            ep["id"].as_str().unwrap(),
            merchant.id
        ))
        .await
        .unwrap();
    }
    wait_for_status(&app, token, stuck_pending, "paused").await;
    let done = wait_for_status(&app, token, stuck_paused, "delivered").await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(enabled_receiver.received().len(), 1);
    assert!(disabled_receiver.received().is_empty());
}
