//! The delivery engine under load and at its edges: the per-endpoint slots never strand a
//! claim, nothing stays queued in memory, and in-flight deliveries are not sent twice.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{assert_error, get_ok, wait_until, TestApp, TestMerchant};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    a_delivery_in_flight_is_neither_retried_nor_replayed_and_both_are_audited,
    the_test_ping_is_audited,
    endpoint_timeouts_are_capped_below_the_delivery_lease,
);

/// Events sent in the stress test; each goes to two endpoints.
const STRESS_EVENTS: usize = 1_500;

/// Thousands of instant deliveries to endpoints capped at 1 and 2 in flight, on a runtime with
/// several threads so that deliveries end while the dispatcher admits new claims for the same
/// endpoints: every delivery arrives, and afterwards no claim is queued in memory and no
/// endpoint is left busy (issue 12, item 9: such an endpoint was skipped until a restart).
async fn instant_deliveries_to_capped_endpoints_all_arrive_and_leave_nothing_queued(app: TestApp) {
    let merchant = app.create_merchant("Stress").await;
    let token = merchant.test_token.clone();
    let (one, two) = (Receiver::start().await, Receiver::start().await);
    endpoint(&app, &token, json!({ "url": one.url, "max_in_flight": 1 })).await;
    endpoint(&app, &token, json!({ "url": two.url, "max_in_flight": 2 })).await;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/v1/events", app.base);
        let token = token.clone();
        senders.spawn(async move {
            for n in (sender..STRESS_EVENTS).step_by(8) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "type": "order.created", "payload": { "n": n } }))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 202);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("sender");
    }
    let deadline = Duration::from_secs(120);
    loop {
        let delivered = app
            .count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
            .await;
        let engine = &app.state.delivery;
        if delivered == 2 * STRESS_EVENTS as i64
            && engine.in_flight() == 0
            && engine.queued_claims() == 0
            && engine.busy_endpoints() == 0
        {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "after {deadline:?}: {delivered} of {} delivered, {} in flight, {} claims queued, {} endpoints busy",
            2 * STRESS_EVENTS,
            engine.in_flight(),
            engine.queued_claims(),
            engine.busy_endpoints(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(one.received().len(), STRESS_EVENTS);
    assert_eq!(two.received().len(), STRESS_EVENTS);
    assert!(one.most_in_flight() <= 1 && two.most_in_flight() <= 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL")
            .await,
        0
    );
}

crate::on_both_stores!(
    configure = |config: &mut hooksign::config::Config| {
        config.auth.rate_per_sec = 100_000;
        config.auth.burst = 100_000;
    },
    threads = 4;
    instant_deliveries_to_capped_endpoints_all_arrive_and_leave_nothing_queued,
);

crate::on_both_stores!(
    configure = |config: &mut hooksign::config::Config| {
        config.delivery.allow_private_networks = false;
    };
    a_refused_address_is_shown_to_merchants_only_as_its_class,
);

/// The test key's id, as created with the merchant.
fn test_key_id(merchant: &TestMerchant) -> String {
    merchant.body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["mode"] == "test")
        .and_then(|key| key["id"].as_str())
        .unwrap()
        .to_owned()
}

/// The newest audit event with `action`, checked to name the test key as actor and a request.
async fn audited(app: &TestApp, merchant: &TestMerchant, action: &str) -> Value {
    let events: Value = get_ok(app, &merchant.test_token, "/v1/audit-events?limit=100").await;
    let event = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {events}"))
        .clone();
    assert_eq!(
        event["actor_key_id"],
        test_key_id(merchant).as_str(),
        "{event}"
    );
    assert!(
        event["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{event}"
    );
    event
}

async fn a_delivery_in_flight_is_neither_retried_nor_replayed_and_both_are_audited(app: TestApp) {
    let merchant = app.create_merchant("In flight").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    receiver.hold();
    let created = endpoint(&app, token, json!({ "url": receiver.url })).await;
    let endpoint_id = created["id"].as_str().unwrap();
    let event = send_event(&app, token, "order.created", json!({})).await;
    let event_id = event["id"].as_str().unwrap();
    let listed: Value = get_ok(&app, token, &format!("/v1/events/{event_id}")).await;
    let delivery = listed["deliveries"][0]["id"].as_str().unwrap().to_owned();
    wait_until(
        "the attempt held at the receiver",
        Duration::from_secs(15),
        || async { (receiver.in_flight() == 1).then_some(()) },
    )
    .await;

    let retry = app
        .authed(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/retry"),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_error(retry, 409, "invalid_request", "delivery_in_flight").await;
    let replay = app
        .authed(
            Method::POST,
            &format!("/v1/endpoints/{endpoint_id}/replay"),
            token,
        )
        .json(&json!({ "status": ["pending", "failed"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed["requeued"], 0, "{replayed}");
    assert_eq!(replayed["skipped_in_flight"], 1, "{replayed}");
    let leased = app
        .count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE id = '{delivery}' AND leased_by IS NOT NULL"
        ))
        .await;
    assert_eq!(leased, 1, "the lease of the attempt in flight is untouched");
    let replay_audit = audited(&app, &merchant, "endpoint.replay").await;
    assert_eq!(replay_audit["target"], endpoint_id);
    assert_eq!(
        replay_audit["details"]["skipped_in_flight"], 1,
        "{replay_audit}"
    );
    assert_eq!(replay_audit["details"]["requeued"], 0, "{replay_audit}");

    // The attempt ends: the receiver got it once, and now a retry re-queues it.
    receiver.release();
    wait_until(
        "the attempt recorded as delivered",
        Duration::from_secs(15),
        || async {
            let delivered = app
                .count(&format!(
                    "SELECT COUNT(*) FROM deliveries WHERE id = '{delivery}' \
                     AND status = 'delivered' AND leased_by IS NULL"
                ))
                .await;
            (delivered == 1).then_some(())
        },
    )
    .await;
    assert_eq!(receiver.received().len(), 1, "sent once, not twice at once");
    let retry = app
        .authed(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/retry"),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    receiver.wait_for(2).await;
    let retry_audit = audited(&app, &merchant, "delivery.retry").await;
    assert_eq!(retry_audit["target"], delivery.as_str());
    // Exactly one retry was audited: the refused one wrote nothing.
    let retries = app
        .count("SELECT COUNT(*) FROM audit_events WHERE action = 'delivery.retry'")
        .await;
    assert_eq!(retries, 1);
}

async fn the_test_ping_is_audited(app: TestApp) {
    let merchant = app.create_merchant("Ping audit").await;
    let receiver = Receiver::start().await;
    let created = endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let endpoint_id = created["id"].as_str().unwrap();
    let ping = app
        .authed(
            Method::POST,
            &format!("/v1/endpoints/{endpoint_id}/test"),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    let event = audited(&app, &merchant, "endpoint.test").await;
    assert_eq!(event["target"], endpoint_id);
    assert_eq!(event["details"]["status_code"], 200, "{event}");
}

/// Issue 12, item 11: a timeout as long as the lease let a slow first attempt be claimed again
/// and sent a second time while still under way.
async fn endpoint_timeouts_are_capped_below_the_delivery_lease(app: TestApp) {
    let merchant = app.create_merchant("Timeouts").await;
    let token = &merchant.test_token;
    let max = app.config.delivery.max_endpoint_timeout_ms();
    assert_eq!(max, 30_000, "half the default 60 s lease");
    for timeout in [max + 1, 60_000] {
        let refused = app
            .authed(Method::POST, "/v1/endpoints", token)
            .json(&json!({ "url": "http://127.0.0.1:9/hook", "timeout_ms": timeout }))
            .send()
            .await
            .unwrap();
        let body = assert_error(refused, 422, "invalid_request", "invalid_timeout").await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&max.to_string()), "{message}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM endpoints").await, 0);
    let created = endpoint(
        &app,
        token,
        json!({ "url": "http://127.0.0.1:9/hook", "timeout_ms": max }),
    )
    .await;
    assert_eq!(created["timeout_ms"], max);
    let id = created["id"].as_str().unwrap();
    let refused = app
        .authed(Method::PATCH, &format!("/v1/endpoints/{id}"), token)
        .json(&json!({ "timeout_ms": 60_000 }))
        .send()
        .await
        .unwrap();
    assert_error(refused, 422, "invalid_request", "invalid_timeout").await;
    let stored: Value = get_ok(&app, token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(stored["timeout_ms"], max, "unchanged");
}

/// Issue 12, item 8: the guard's text named the address a host resolves to ("private address
/// 10.x"), mapping the operator's internal DNS for any merchant. Merchants see the class.
async fn a_refused_address_is_shown_to_merchants_only_as_its_class(app: TestApp) {
    let merchant = app.create_merchant("Guarded").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let created = endpoint(&app, token, json!({ "url": url })).await;
    let endpoint_id = created["id"].as_str().unwrap();
    let no_address = |text: &str| {
        for address in ["127.0.0.1", "::1", "loopback"] {
            assert!(!text.contains(address), "{address} in {text}");
        }
    };
    let ping = app
        .authed(
            Method::POST,
            &format!("/v1/endpoints/{endpoint_id}/test"),
            token,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    no_address(&ping);
    let ping: Value = serde_json::from_str(&ping).unwrap();
    assert_eq!(ping["succeeded"], false);
    assert_eq!(ping["error_class"], "forbidden_address", "{ping}");

    let event = send_event(&app, token, "order.created", json!({})).await;
    let event_id = event["id"].as_str().unwrap();
    let listed = wait_until(
        "the delivery's first attempt recorded",
        Duration::from_secs(15),
        || async {
            let listed = get_ok(&app, token, &format!("/v1/events/{event_id}")).await;
            (listed["deliveries"][0]["attempts"].as_u64() >= Some(1)).then_some(listed)
        },
    )
    .await;
    let delivery_id = listed["deliveries"][0]["id"].as_str().unwrap();
    let shown = app
        .authed(Method::GET, &format!("/v1/deliveries/{delivery_id}"), token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    no_address(&shown);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let attempt = &shown["attempt_history"][0];
    assert_eq!(attempt["error_class"], "forbidden_address", "{shown}");
    assert!(
        attempt["response_body"]
            .as_str()
            .unwrap()
            .starts_with("forbidden_address"),
        "{shown}"
    );
    assert!(receiver.received().is_empty(), "nothing reached loopback");
}
