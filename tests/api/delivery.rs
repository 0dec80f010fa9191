//! The delivery engine end to end: real receivers on loopback, signatures at send time through
//! a rotation, retries on a manual clock, dead letters, replay, 410, filters and the test ping.

use chrono::Duration;
use hooksign::verify::{MatchedHeader, Verifier};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_not_claimed, enable_endpoint, engine_settled, get_ok, spawn_app_with,
    Backend, TestApp, TestMerchant,
};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    endpoints_are_validated_and_managed,
    an_event_is_delivered_once_signed_with_every_header,
    signatures_follow_the_rotation_at_send_time,
    failures_are_retried_on_the_schedule_and_recorded,
    a_delivery_fails_after_the_last_attempt_and_can_be_retried_or_replayed,
    gone_disables_the_endpoint_until_re_enabled,
    filters_choose_which_endpoints_receive_an_event,
    the_test_ping_reports_the_attempt,
    bad_events_are_refused_and_store_nothing,
    redirects_and_timeouts_are_failures_and_show_in_metrics,
    events_honour_idempotency_keys,
    the_payload_is_delivered_exactly_as_sent,
    a_slow_endpoint_is_held_to_its_cap_and_does_not_hold_up_others,
    retry_after_is_honoured_on_503_and_ignored_on_500,
    a_gone_endpoints_other_deliveries_wait_until_it_is_re_enabled,
    replay_filters_select_exactly_the_matching_deliveries,
    a_replay_of_several_statuses_counts_each_delivery_once,
    claims_queued_behind_a_gone_attempt_are_not_sent_to_the_endpoint,
);

async fn the_payload_is_delivered_exactly_as_sent(app: TestApp) {
    let merchant = app.create_merchant("Exact bytes").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    // Key order, number formatting and unicode escapes as the platform wrote them.
    let payload = r#"{"zeta":1,"alpha":1.50,"name":"Zo\u00eb","list":[3,2,1]}"#;
    let body = format!(r#"{{"type":"order.created","payload":{payload}}}"#);
    let response = app
        .authed(Method::POST, "/v1/events", &merchant.test_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer = response.text().await.unwrap();
    assert!(answer.contains(payload), "{answer}");
    let got = receiver.wait_for(1).await;
    let delivered = String::from_utf8(got[0].body.clone()).unwrap();
    assert!(
        delivered.ends_with(&format!(r#""data":{payload}}}"#)),
        "{delivered}"
    );
    let listed = app
        .authed(Method::GET, "/v1/events", &merchant.test_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(payload), "{listed}");
}

pub async fn endpoint(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app
        .authed(Method::POST, "/v1/endpoints", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

pub async fn send_event(app: &TestApp, token: &str, event_type: &str, payload: Value) -> Value {
    let response = app
        .authed(Method::POST, "/v1/events", token)
        .json(&json!({ "type": event_type, "payload": payload }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body
}

async fn secret(app: &TestApp, merchant: &TestMerchant) -> String {
    let response = app
        .authed(
            Method::POST,
            "/v1/signing-secret/reveal",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["active"]["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the delivery reaches `status` (the worker records it after the receiver answers).
async fn wait_status(app: &TestApp, token: &str, delivery: &str, status: &str) -> Value {
    for _ in 0..300 {
        let body = get_ok(app, token, &format!("/v1/deliveries/{delivery}")).await;
        if body["status"] == status
            && body["attempt_history"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("delivery {delivery} never became {status}");
}

pub async fn first_delivery(app: &TestApp, token: &str, event: &Value) -> String {
    let body = get_ok(
        app,
        token,
        &format!("/v1/events/{}", event["id"].as_str().unwrap()),
    )
    .await;
    body["deliveries"][0]["id"].as_str().unwrap().to_owned()
}

/// Waits until the delivery has made `attempts` attempts.
async fn wait_attempts(app: &TestApp, token: &str, delivery: &str, attempts: u64) -> Value {
    for _ in 0..300 {
        let body = get_ok(app, token, &format!("/v1/deliveries/{delivery}")).await;
        if body["attempts"].as_u64() == Some(attempts) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("delivery {delivery} never reached {attempts} attempts");
}

async fn endpoints_are_validated_and_managed(app: TestApp) {
    let merchant = app.create_merchant("Endpoints").await;
    let created = endpoint(&app, &merchant.test_token, json!({ "url": "http://127.0.0.1:9/hook", "description": "orders", "event_types": ["order.*"], "headers": { "X-Team": "payments" } })).await;
    assert_eq!(created["object"], "endpoint");
    assert_eq!(created["livemode"], false);
    assert_eq!(created["scheme"], "bolt");
    assert_eq!(created["max_in_flight"], 10);
    assert_eq!(created["timeout_ms"], 15000);
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_str().unwrap();
    let cases = [
        (
            json!({ "url": "http://example.com/hook" }),
            &merchant.live_token,
            "https_required",
        ),
        (
            json!({ "url": "ftp://example.com/hook" }),
            &merchant.test_token,
            "invalid_url",
        ),
        (
            json!({ "url": "not a url" }),
            &merchant.test_token,
            "invalid_url",
        ),
        (
            json!({ "url": "https://user:pw@example.com/hook" }),
            &merchant.test_token,
            "invalid_url",
        ),
        (json!({}), &merchant.test_token, "invalid_url"),
        (
            json!({ "url": "https://example.com", "event_types": ["Order.Created"] }),
            &merchant.test_token,
            "invalid_event_types",
        ),
        (
            json!({ "url": "https://example.com", "max_in_flight": 0 }),
            &merchant.test_token,
            "invalid_max_in_flight",
        ),
        (
            json!({ "url": "https://example.com", "timeout_ms": 10 }),
            &merchant.test_token,
            "invalid_timeout",
        ),
        (
            json!({ "url": "https://example.com", "headers": { "X-Bolt-Hmac-Sha256": "forged" } }),
            &merchant.test_token,
            "invalid_headers",
        ),
        (
            json!({ "url": "https://example.com", "scheme": "fancy" }),
            &merchant.test_token,
            "invalid_body",
        ),
        (
            json!({ "url": "https://example.com", "secret": "x" }),
            &merchant.test_token,
            "invalid_body",
        ),
    ];
    for (body, token, code) in cases {
        let response = app
            .authed(Method::POST, "/v1/endpoints", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(response, 422, "invalid_request", code).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM endpoints").await,
        1,
        "bad input created nothing"
    );
    let patched = app
        .authed(
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            &merchant.test_token,
        )
        .json(&json!({ "scheme": "both", "enabled": false }))
        .send()
        .await
        .unwrap();
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["scheme"], "both");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["disabled_reason"], "disabled by an admin");
    let list = get_ok(&app, &merchant.test_token, "/v1/endpoints").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // The live mode sees none of test mode's endpoints.
    assert!(
        get_ok(&app, &merchant.live_token, "/v1/endpoints").await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let hidden = app
        .authed(
            Method::GET,
            &format!("/v1/endpoints/{id}"),
            &merchant.live_token,
        )
        .send()
        .await
        .unwrap();
    assert_error(hidden, 404, "invalid_request", "resource_missing").await;
    let deleted = app
        .authed(
            Method::DELETE,
            &format!("/v1/endpoints/{id}"),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    // The row goes with the retention task's next pass (tests/api/retention.rs).
    app.state.pruner.tick().await.unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM endpoints").await, 0);
}

async fn an_event_is_delivered_once_signed_with_every_header(app: TestApp) {
    let merchant = app.create_merchant("Deliver").await;
    let receiver = Receiver::start().await;
    let ep = endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": receiver.url, "headers": { "X-Team": "payments" } }),
    )
    .await;
    let event = send_event(
        &app,
        &merchant.test_token,
        "order.created",
        json!({ "order": "ord_1", "amount": 1299 }),
    )
    .await;
    assert_eq!(event["object"], "event");
    assert_eq!(event["delivery_count"], 1);
    let got = receiver.wait_for(1).await;
    let request = &got[0];
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["id"], event["id"]);
    assert_eq!(body["object"], "event");
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["livemode"], false);
    assert_eq!(body["data"], json!({ "order": "ord_1", "amount": 1299 }));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request
        .header("user-agent")
        .unwrap()
        .starts_with("hooksign/"));
    assert_eq!(request.header("x-hooksign-event-id"), event["id"].as_str());
    assert!(request
        .header("x-hooksign-delivery-id")
        .unwrap()
        .starts_with("dlv_"));
    assert_eq!(request.header("x-hooksign-attempt"), Some("1"));
    assert!(request
        .header("x-hooksign-timestamp")
        .unwrap()
        .parse::<i64>()
        .is_ok());
    assert_eq!(request.header("x-team"), Some("payments"));
    assert!(request.header("x-bolt-hmac-sha256-pending").is_none());
    let secret = secret(&app, &merchant).await;
    let matched = Verifier::new([&secret])
        .unwrap()
        .verify_bolt(request.headers.as_slice(), &request.body)
        .expect("signature verifies");
    assert_eq!(matched.header, MatchedHeader::Bolt);
    let delivery = wait_status(
        &app,
        &merchant.test_token,
        request.header("x-hooksign-delivery-id").unwrap(),
        "delivered",
    )
    .await;
    assert_eq!(delivery["endpoint_id"], ep["id"]);
    assert_eq!(delivery["attempts"], 1);
    let attempt = &delivery["attempt_history"][0];
    assert_eq!(attempt["status_code"], 200);
    assert!(attempt["error_class"].is_null());
    assert_eq!(attempt["response_body"], "ok");
    assert_eq!(attempt["signature_headers"], json!(["X-Bolt-Hmac-Sha256"]));
    // Delivered once: a later claim pass takes it no more.
    let delivery = request.header("x-hooksign-delivery-id").unwrap();
    engine_settled(&app).await;
    assert_not_claimed(&app, delivery, 1, "delivered once").await;
    assert_eq!(receiver.received().len(), 1, "delivered once");
}

async fn signatures_follow_the_rotation_at_send_time(app: TestApp) {
    let merchant = app.create_merchant("Rotating").await;
    let receiver = Receiver::start().await;
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": receiver.url, "scheme": "both" }),
    )
    .await;
    let old = secret(&app, &merchant).await;
    let started = app
        .authed(
            Method::POST,
            "/v1/signing-secret/initiate",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    let new = started.json::<Value>().await.unwrap()["pending"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    send_event(
        &app,
        &merchant.test_token,
        "order.created",
        json!({ "n": 1 }),
    )
    .await;
    let during = receiver.wait_for(1).await[0].clone();
    let now = app.clock_now().timestamp();
    for (secret, header) in [
        (&old, MatchedHeader::Bolt),
        (&new, MatchedHeader::BoltPending),
    ] {
        let verifier = Verifier::new([secret]).unwrap();
        assert_eq!(
            verifier
                .verify_bolt(during.headers.as_slice(), &during.body)
                .unwrap()
                .header,
            header
        );
        verifier
            .verify_standard(during.headers.as_slice(), &during.body, now)
            .expect("standard signature too");
    }
    assert_eq!(
        during
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2
    );

    app.authed(
        Method::POST,
        "/v1/signing-secret/complete",
        &merchant.test_token,
    )
    .send()
    .await
    .unwrap();
    send_event(
        &app,
        &merchant.test_token,
        "order.created",
        json!({ "n": 2 }),
    )
    .await;
    let after = receiver.wait_for(2).await[1].clone();
    assert!(after.header("x-bolt-hmac-sha256-pending").is_none());
    assert!(Verifier::new([&new])
        .unwrap()
        .verify_bolt(after.headers.as_slice(), &after.body)
        .is_ok());
    assert!(Verifier::new([&old])
        .unwrap()
        .verify_bolt(after.headers.as_slice(), &after.body)
        .is_err());

    app.authed(
        Method::POST,
        "/v1/signing-secret/revert",
        &merchant.test_token,
    )
    .send()
    .await
    .unwrap();
    send_event(
        &app,
        &merchant.test_token,
        "order.created",
        json!({ "n": 3 }),
    )
    .await;
    let reverted = receiver.wait_for(3).await[2].clone();
    assert!(Verifier::new([&old])
        .unwrap()
        .verify_bolt(reverted.headers.as_slice(), &reverted.body)
        .is_ok());
    assert!(Verifier::new([&new])
        .unwrap()
        .verify_bolt(reverted.headers.as_slice(), &reverted.body)
        .is_err());
}

async fn failures_are_retried_on_the_schedule_and_recorded(app: TestApp) {
    let merchant = app.create_merchant("Retry").await;
    let receiver = Receiver::start().await;
    receiver.script(&[500]);
    receiver.script_with_headers(429, &[("Retry-After", "1000")]);
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let event = send_event(&app, &merchant.test_token, "order.created", json!({})).await;
    receiver.wait_for(1).await;
    let delivery = first_delivery(&app, &merchant.test_token, &event).await;
    let after_first = wait_attempts(&app, &merchant.test_token, &delivery, 1).await;
    assert_eq!(after_first["status"], "pending");
    assert_eq!(after_first["last_status"], 500);
    // The second attempt is due about 5 s later (±20 %): not before.
    app.clock.advance(Duration::seconds(3));
    engine_settled(&app).await;
    assert_not_claimed(&app, &delivery, 1, "not retried early").await;
    assert_eq!(receiver.received().len(), 1, "not retried early");
    app.clock.advance(Duration::seconds(4));
    app.state.delivery.wake();
    receiver.wait_for(2).await;
    let after_second = wait_attempts(&app, &merchant.test_token, &delivery, 2).await;
    // 429 with Retry-After: 1000 waits longer than the schedule's 300 s (±20 %).
    let next: chrono::DateTime<chrono::Utc> = after_second["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(next - app.clock_now(), Duration::seconds(1000));
    app.clock.advance(Duration::seconds(999));
    engine_settled(&app).await;
    assert_not_claimed(&app, &delivery, 2, "Retry-After honoured").await;
    assert_eq!(receiver.received().len(), 2, "Retry-After honoured");
    app.clock.advance(Duration::seconds(1));
    app.state.delivery.wake();
    let got = receiver.wait_for(3).await;
    let done = wait_status(&app, &merchant.test_token, &delivery, "delivered").await;
    let history = done["attempt_history"].as_array().unwrap();
    let codes: Vec<_> = history
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 429, 200]);
    assert_eq!(history[0]["error_class"], "server_error");
    assert_eq!(history[1]["error_class"], "client_error");
    // The delivery id is stable across retries; the attempt number counts up.
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("x-hooksign-delivery-id").unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|id| id == &delivery));
    let attempts: Vec<_> = got
        .iter()
        .map(|r| r.header("x-hooksign-attempt").unwrap().to_owned())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    // The same bytes every time.
    assert!(got.iter().all(|r| r.body == got[0].body));
}

async fn a_delivery_fails_after_the_last_attempt_and_can_be_retried_or_replayed(app: TestApp) {
    let merchant = app.create_merchant("Dead letters").await;
    let receiver = Receiver::start().await;
    receiver.script(&[500, 502, 500, 500]);
    let ep = endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let event = send_event(&app, &merchant.test_token, "order.created", json!({})).await;
    let delivery = first_delivery(&app, &merchant.test_token, &event).await;
    wait_attempts(&app, &merchant.test_token, &delivery, 1).await;
    // The test daemons retry twice (after 5 s and 300 s, ±20 %); then the delivery fails.
    app.clock.advance(Duration::seconds(10));
    app.state.delivery.wake();
    wait_attempts(&app, &merchant.test_token, &delivery, 2).await;
    app.clock.advance(Duration::seconds(400));
    app.state.delivery.wake();
    let failed = wait_status(&app, &merchant.test_token, &delivery, "failed").await;
    assert_eq!(failed["attempts"], 3);
    let listed = get_ok(&app, &merchant.test_token, "/v1/deliveries?status=failed").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    // Retry one by hand: it goes again now.
    let retried = app
        .authed(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/retry"),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.json::<Value>().await.unwrap()["status"], "pending");
    // A hand retry is one more attempt; it failed (500) and has no retries left.
    wait_attempts(&app, &merchant.test_token, &delivery, 4).await;
    wait_status(&app, &merchant.test_token, &delivery, "failed").await;
    // Replay the endpoint's failed deliveries in bulk: the receiver now answers 200.
    let replay = app
        .authed(
            Method::POST,
            &format!("/v1/endpoints/{}/replay", ep["id"].as_str().unwrap()),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replay.json::<Value>().await.unwrap()["requeued"], 1);
    wait_status(&app, &merchant.test_token, &delivery, "delivered").await;
    assert_eq!(receiver.received().len(), 5);
}

async fn gone_disables_the_endpoint_until_re_enabled(app: TestApp) {
    let merchant = app.create_merchant("Gone").await;
    let receiver = Receiver::start().await;
    receiver.script(&[410]);
    let ep = endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let id = ep["id"].as_str().unwrap();
    let event = send_event(&app, &merchant.test_token, "order.created", json!({})).await;
    let delivery = first_delivery(&app, &merchant.test_token, &event).await;
    wait_status(&app, &merchant.test_token, &delivery, "failed").await;
    let disabled = get_ok(&app, &merchant.test_token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(disabled["enabled"], false);
    assert!(disabled["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    assert!(disabled["disabled_at"].is_string());
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    assert!(chain
        .iter()
        .any(|e| e.action == "endpoint.disable" && e.target == id));
    // A disabled endpoint receives no new events.
    let quiet = send_event(&app, &merchant.test_token, "order.created", json!({})).await;
    assert_eq!(quiet["delivery_count"], 0);
    let enabled = enable_endpoint(&app, &merchant.test_token, id).await;
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null());
    assert_eq!(
        send_event(&app, &merchant.test_token, "order.created", json!({})).await["delivery_count"],
        1
    );
    receiver.wait_for(2).await;
}

async fn filters_choose_which_endpoints_receive_an_event(app: TestApp) {
    let merchant = app.create_merchant("Filters").await;
    let orders = Receiver::start().await;
    let everything = Receiver::start().await;
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": orders.url, "event_types": ["order.*"] }),
    )
    .await;
    endpoint(&app, &merchant.test_token, json!({ "url": everything.url })).await;
    assert_eq!(
        send_event(&app, &merchant.test_token, "order.created", json!({})).await["delivery_count"],
        2
    );
    assert_eq!(
        send_event(&app, &merchant.test_token, "refund.created", json!({})).await["delivery_count"],
        1
    );
    everything.wait_for(2).await;
    orders.wait_for(1).await;
    // Nothing more is on its way to the filtered endpoint: every claim pass is done, nothing
    // is leased, and the endpoint has the one delivery it got.
    engine_settled(&app).await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL OR status <> 'delivered'"
        )
        .await,
        0,
        "every delivery sent and recorded"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries").await,
        3,
        "one delivery to the filtered endpoint, two to the other"
    );
    assert_eq!(orders.received().len(), 1);
    assert_eq!(everything.received().len(), 2);
    // Live events never reach test endpoints.
    assert_eq!(
        send_event(&app, &merchant.live_token, "order.created", json!({})).await["delivery_count"],
        0
    );
}

async fn a_slow_endpoint_is_held_to_its_cap_and_does_not_hold_up_others(app: TestApp) {
    let merchant = app.create_merchant("Slow and fast").await;
    let slow = Receiver::start().await;
    // The slow endpoint answers nothing until released, however long the rest takes.
    slow.hold();
    let fast = Receiver::start().await;
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": slow.url, "event_types": ["slow.*"], "max_in_flight": 2 }),
    )
    .await;
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": fast.url, "event_types": ["fast.*"] }),
    )
    .await;
    // The ones claimed beyond the cap wait in memory behind the two in flight.
    for n in 0..12 {
        send_event(&app, &merchant.test_token, "slow.tick", json!({ "n": n })).await;
    }
    for n in 0..5 {
        send_event(&app, &merchant.test_token, "fast.tick", json!({ "n": n })).await;
    }
    fast.wait_for(5).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while slow.in_flight() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow endpoint never had its 2 deliveries in flight (has {})",
            slow.in_flight()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        slow.received().len(),
        0,
        "held: nothing answered yet, and still the fast endpoint got all five"
    );
    assert_eq!(
        slow.most_in_flight(),
        2,
        "no more than the cap of 2 at once"
    );
    slow.release();
    let got = slow.wait_for(12).await;
    assert_eq!(slow.most_in_flight(), 2, "the cap of 2 is used and kept");
    let ids = slow.distinct("x-hooksign-delivery-id");
    assert_eq!(ids.len(), 12, "each delivery sent once");
    assert!(got
        .iter()
        .all(|r| r.header("x-hooksign-attempt") == Some("1")));
    // Every outcome is recorded and no lease is left behind.
    for id in &ids {
        wait_status(&app, &merchant.test_token, id, "delivered").await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL")
            .await,
        0
    );
    // A later claim pass sends none of them again.
    engine_settled(&app).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL OR lease_until IS NOT NULL OR attempts <> 1")
            .await,
        0,
        "each delivery attempted once, none claimed again"
    );
    assert_eq!(slow.received().len(), 12);
    assert_eq!(fast.received().len(), 5);
}

async fn the_test_ping_reports_the_attempt(app: TestApp) {
    let merchant = app.create_merchant("Ping").await;
    let receiver = Receiver::start().await;
    receiver.script(&[200, 503]);
    let ep = endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let path = format!("/v1/endpoints/{}/test", ep["id"].as_str().unwrap());
    let ok: Value = app
        .authed(Method::POST, &path, &merchant.test_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["succeeded"], true);
    assert_eq!(ok["status_code"], 200);
    assert_eq!(ok["pending_signature"], false);
    assert_eq!(ok["signature_headers"], json!(["X-Bolt-Hmac-Sha256"]));
    let ping = &receiver.received()[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&ping.body).unwrap()["type"],
        "ping"
    );
    app.authed(
        Method::POST,
        "/v1/signing-secret/initiate",
        &merchant.test_token,
    )
    .send()
    .await
    .unwrap();
    let failed: Value = app
        .authed(Method::POST, &path, &merchant.test_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed["succeeded"], false);
    assert_eq!(failed["status_code"], 503);
    assert_eq!(failed["pending_signature"], true);
    assert_eq!(
        failed["signature_headers"],
        json!(["X-Bolt-Hmac-Sha256", "X-Bolt-Hmac-Sha256-Pending"])
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries").await,
        0,
        "a ping is not queued"
    );
}

async fn redirects_and_timeouts_are_failures_and_show_in_metrics(app: TestApp) {
    let merchant = app.create_merchant("Redirects").await;
    let redirecting = Receiver::start().await;
    redirecting.script_with_headers(302, &[("Location", "http://127.0.0.1:9/elsewhere")]);
    let slow = Receiver::start().await;
    slow.set_delay(std::time::Duration::from_millis(800));
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": redirecting.url }),
    )
    .await;
    endpoint(
        &app,
        &merchant.test_token,
        json!({ "url": slow.url, "timeout_ms": 200 }),
    )
    .await;
    let event = send_event(&app, &merchant.test_token, "order.created", json!({})).await;
    let detail = get_ok(
        &app,
        &merchant.test_token,
        &format!("/v1/events/{}", event["id"].as_str().unwrap()),
    )
    .await;
    let mut classes = Vec::new();
    for delivery in detail["deliveries"].as_array().unwrap() {
        let id = delivery["id"].as_str().unwrap();
        let done = wait_attempts(&app, &merchant.test_token, id, 1).await;
        let full = get_ok(&app, &merchant.test_token, &format!("/v1/deliveries/{id}")).await;

        assert_eq!(done["status"], "pending", "retried later: {full}");
        classes.push(
            full["attempt_history"][0]["error_class"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    classes.sort();
    assert_eq!(classes, ["redirect", "timeout"]);
    assert_eq!(
        redirecting.received().len(),
        1,
        "the redirect was not followed"
    );
    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hooksign_delivery_attempts_total{outcome=\"retry\",class=\"redirect\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hooksign_delivery_attempt_duration_seconds_bucket"),
        "{metrics}"
    );
}

async fn bad_events_are_refused_and_store_nothing(app: TestApp) {
    let merchant = app.create_merchant("Bad events").await;
    let cases = [
        (
            json!({ "type": "Order Created", "payload": {} }),
            422,
            "invalid_event_type",
        ),
        (
            json!({ "type": "", "payload": {} }),
            422,
            "invalid_event_type",
        ),
        (json!({ "type": "order.created" }), 422, "invalid_body"),
        (
            json!({ "type": "order.created", "payload": {}, "extra": 1 }),
            422,
            "invalid_body",
        ),
        (json!({ "type": 5, "payload": {} }), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let response = app
            .authed(Method::POST, "/v1/events", &merchant.test_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(response, status, "invalid_request", code).await;
    }
    let too_big = json!({ "type": "order.created", "payload": "x".repeat(300 * 1024) });
    let response = app
        .authed(Method::POST, "/v1/events", &merchant.test_token)
        .json(&too_big)
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "invalid_request", "body_too_large").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
    let reader = app
        .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
        .json(&json!({ "name": "r", "scopes": ["events:read"] }))
        .send()
        .await
        .unwrap();
    let reader: Value = reader.json().await.unwrap();
    let denied = app
        .authed(
            Method::POST,
            "/v1/events",
            reader["token"].as_str().unwrap(),
        )
        .json(&json!({ "type": "a", "payload": 1 }))
        .send()
        .await
        .unwrap();
    assert_error(denied, 403, "permission", "missing_scope").await;
}

async fn events_honour_idempotency_keys(app: TestApp) {
    let merchant = app.create_merchant("Idempotent events").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let post = || {
        app.authed(Method::POST, "/v1/events", &merchant.test_token)
            .header("idempotency-key", "order-1-created")
            .json(&json!({ "type": "order.created", "payload": { "order": 1 } }))
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = post().await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
    receiver.wait_for(1).await;
    let listed = get_ok(&app, &merchant.test_token, "/v1/events").await;
    assert_eq!(listed["data"][0]["id"], first["id"]);
    assert_eq!(listed["data"][0]["data"], json!({ "order": 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_when_the_guard_is_on() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.delivery.allow_private_networks = false
    })
    .await
    .unwrap();
    let merchant = app.create_merchant("Guarded").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest",
        "http://[::ffff:127.0.0.1]/x",
    ] {
        let response = app
            .authed(Method::POST, "/v1/endpoints", &merchant.test_token)
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert_error(response, 422, "invalid_request", "forbidden_address").await;
    }
    // A name that resolves to loopback passes creation but is refused at connection time.
    let receiver = Receiver::start().await;
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let ep = endpoint(&app, &merchant.test_token, json!({ "url": url })).await;
    let ping: Value = app
        .authed(
            Method::POST,
            &format!("/v1/endpoints/{}/test", ep["id"].as_str().unwrap()),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ping["succeeded"], false);
    assert_eq!(ping["error_class"], "forbidden_address");
    assert!(
        receiver.received().is_empty(),
        "nothing reached the loopback receiver"
    );
}

/// The next attempt of a delivery, as the API shows it.
fn next_attempt_at(delivery: &Value) -> chrono::DateTime<chrono::Utc> {
    delivery["next_attempt_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_attempt_at: {delivery}"))
        .parse()
        .unwrap()
}

/// `Retry-After` on a 503 sets the next attempt, in seconds or as an HTTP date; on a 500 it is
/// ignored and the schedule applies (5 s ±20 % on the test daemons). Each answer goes to an
/// endpoint of its own, so the three next attempts are read at the same moment.
async fn retry_after_is_honoured_on_503_and_ignored_on_500(app: TestApp) {
    let merchant = app.create_merchant("Retry-After").await;
    let token = &merchant.test_token;
    let now = app.clock_now();
    // HTTP dates have whole seconds.
    let date_at = chrono::DateTime::from_timestamp(now.timestamp() + 600, 0).unwrap();
    let date = date_at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let cases = [
        ("seconds", 503, "120".to_owned()),
        ("date", 503, date),
        ("ignored", 500, "1000".to_owned()),
    ];
    let mut receivers = Vec::new();
    let mut deliveries = Vec::new();
    for (name, status, retry_after) in &cases {
        let receiver = Receiver::start().await;
        receiver.script_with_headers(*status, &[("Retry-After", retry_after)]);
        endpoint(
            &app,
            token,
            json!({ "url": receiver.url, "event_types": [format!("{name}.*")] }),
        )
        .await;
        let event = send_event(&app, token, &format!("{name}.tick"), json!({})).await;
        deliveries.push(first_delivery(&app, token, &event).await);
        receivers.push(receiver);
    }
    let mut next = Vec::new();
    for ((_, status, _), delivery) in cases.iter().zip(&deliveries) {
        let after = wait_attempts(&app, token, delivery, 1).await;
        assert_eq!(after["status"], "pending", "{after}");
        assert_eq!(after["last_status"], *status, "{after}");
        next.push(next_attempt_at(&after));
    }
    assert_eq!(app.clock_now(), now, "the clock has not moved");
    let ignored = next[2] - now;
    assert_eq!(
        (
            next[0] - now,
            next[1],
            ignored >= Duration::seconds(4) && ignored <= Duration::seconds(6)
        ),
        (Duration::seconds(120), date_at, true),
        "next attempts: 120 s after a 503 asking 120, at the date a 503 asked, and on the \
         schedule after a 500 ({ignored} later)"
    );
    // The engine sends each one at the time shown.
    for (n, at) in [(2, next[2]), (0, next[0]), (1, next[1])] {
        app.clock.advance(at - app.clock_now());
        app.state.delivery.wake();
        let done = wait_status(&app, token, &deliveries[n], "delivered").await;
        assert_eq!(done["attempts"], 2, "{done}");
        assert_eq!(receivers[n].received().len(), 2);
    }
}

/// A 410 disables the endpoint. Its other deliveries, queued while the 410 attempt was under
/// way, are neither sent nor dropped: they stay pending, unattempted and unclaimed, and go out
/// once the endpoint is enabled again.
async fn a_gone_endpoints_other_deliveries_wait_until_it_is_re_enabled(app: TestApp) {
    let merchant = app.create_merchant("Gone, others waiting").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    receiver.script(&[410]);
    receiver.hold();
    let ep = endpoint(
        &app,
        token,
        json!({ "url": receiver.url, "max_in_flight": 1 }),
    )
    .await;
    let id = ep["id"].as_str().unwrap();
    let event = send_event(&app, token, "order.created", json!({ "n": 0 })).await;
    let gone = first_delivery(&app, token, &event).await;
    // The first attempt is held at the receiver; with the endpoint's one permit taken, the
    // claim query skips the endpoint, so the next deliveries stay queued in the database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while receiver.in_flight() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first attempt never reached the receiver"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut waiting = Vec::new();
    for n in 1..=3 {
        let event = send_event(&app, token, "order.created", json!({ "n": n })).await;
        assert_eq!(event["delivery_count"], 1, "{event}");
        waiting.push(first_delivery(&app, token, &event).await);
    }
    receiver.release();
    wait_status(&app, token, &gone, "failed").await;
    let disabled = get_ok(&app, token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("410")),
        "{disabled}"
    );
    // A claim now starts nothing: the disabled endpoint's deliveries are paused (out of the
    // queue), unattempted and unleased (had one been claimed, by this batch or the engine's
    // own, it would be leased, attempted or delivered by now).
    let started = app.state.delivery.dispatch_batch().await.unwrap();
    assert_eq!(started, 0, "a claim started a disabled endpoint's delivery");
    let ids = waiting
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE id IN ({ids}) AND status = 'paused' \
             AND attempts = 0 AND leased_by IS NULL"
        ))
        .await,
        3,
        "the waiting deliveries are untouched"
    );
    for delivery in &waiting {
        let shown = get_ok(&app, token, &format!("/v1/deliveries/{delivery}")).await;
        assert_eq!(shown["status"], "paused", "{shown}");
        assert_eq!(shown["attempts"], 0, "{shown}");
    }
    assert_eq!(
        receiver.received().len(),
        1,
        "only the 410 attempt was sent"
    );

    enable_endpoint(&app, token, id).await;
    for delivery in &waiting {
        let done = wait_status(&app, token, delivery, "delivered").await;
        assert_eq!(done["attempts"], 1, "{done}");
    }
    let got = receiver.wait_for(4).await;
    let sent: Vec<_> = got
        .iter()
        .map(|r| r.header("x-hooksign-delivery-id").unwrap().to_owned())
        .collect();
    assert_eq!(sent[0], gone);
    let mut later = sent[1..].to_vec();
    later.sort();
    let mut expected = waiting.clone();
    expected.sort();
    assert_eq!(later, expected, "each waiting delivery sent once");
    let failed = get_ok(&app, token, &format!("/v1/deliveries/{gone}")).await;
    assert_eq!(
        failed["status"], "failed",
        "the 410 delivery is not re-sent"
    );
}

/// `POST /v1/endpoints/{id}/replay` re-queues exactly the deliveries its `status`, `since`
/// (inclusive) and `until` (exclusive) select, checked in the answer's count, in the rows the
/// replay changed, and in what the receiver gets again.
async fn replay_filters_select_exactly_the_matching_deliveries(app: TestApp) {
    let merchant = app.create_merchant("Replay filters").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    // A is delivered, B fails three times, C is told to come back in 3000 s, D and E are
    // delivered; a minute apart, so that each has its own `created_at`.
    receiver.script(&[200, 500, 500, 500]);
    receiver.script_with_headers(503, &[("Retry-After", "3000")]);
    let ep = endpoint(&app, token, json!({ "url": receiver.url })).await;
    let path = format!("/v1/endpoints/{}/replay", ep["id"].as_str().unwrap());
    let mut ids = Vec::new();
    for name in ["A", "B", "C", "D", "E"] {
        let event = send_event(&app, token, "order.created", json!({ "name": name })).await;
        let delivery = first_delivery(&app, token, &event).await;
        match name {
            "B" => {
                wait_attempts(&app, token, &delivery, 1).await;
                app.clock.advance(Duration::seconds(10));
                app.state.delivery.wake();
                wait_attempts(&app, token, &delivery, 2).await;
                app.clock.advance(Duration::seconds(400));
                app.state.delivery.wake();
                wait_status(&app, token, &delivery, "failed").await;
            }
            "C" => {
                let pending = wait_attempts(&app, token, &delivery, 1).await;
                assert_eq!(pending["status"], "pending", "{pending}");
            }
            _ => {
                wait_status(&app, token, &delivery, "delivered").await;
            }
        }
        ids.push(delivery);
        app.clock.advance(Duration::seconds(60));
    }
    let [a, b, c, d, e] = ids.clone().try_into().unwrap();
    let created = |id: &str| {
        let (app, token, id) = (&app, token, id.to_owned());
        async move {
            get_ok(app, token, &format!("/v1/deliveries/{id}")).await["created_at"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (created_b, created_d) = (created(&b).await, created(&d).await);
    let mut sent = receiver.received().len();
    assert_eq!(sent, 7);
    let mut attempts: std::collections::HashMap<String, u64> =
        [(&a, 1), (&b, 3), (&c, 1), (&d, 1), (&e, 1)]
            .into_iter()
            .map(|(id, n)| (id.clone(), n))
            .collect();
    let steps = [
        // The default replays the failed ones only.
        (json!({}), vec![&b]),
        (json!({ "status": ["pending"] }), vec![&c]),
        // All five are delivered from here on.
        (
            json!({ "status": ["delivered"], "since": created_d }),
            vec![&d, &e],
        ),
        (
            json!({ "status": ["delivered"], "until": created_b }),
            vec![&a],
        ),
        (
            json!({ "status": ["delivered"], "since": created_b, "until": created_d }),
            vec![&b, &c],
        ),
        (json!({ "status": ["failed", "pending"] }), vec![]),
    ];
    for (body, expected) in steps {
        // Each replay at a time of its own: the rows it changed carry it.
        app.clock.advance(Duration::seconds(1));
        let at = hooksign::clock::to_millis(app.clock_now());
        let response = app
            .authed(Method::POST, &path, token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["requeued"], expected.len(), "{body}: {answer}");
        assert_eq!(answer["skipped_in_flight"], 0, "{body}: {answer}");
        let mut changed = Vec::new();
        for id in &ids {
            let sql =
                format!("SELECT COUNT(*) FROM deliveries WHERE id = '{id}' AND updated_at = {at}");
            if app.count(&sql).await == 1 {
                changed.push(id);
            }
        }
        assert_eq!(changed, expected, "the rows {body} re-queued");
        let got = receiver.wait_for(sent + expected.len()).await;
        let mut again: Vec<_> = got[sent..]
            .iter()
            .map(|r| r.header("x-hooksign-delivery-id").unwrap().to_owned())
            .collect();
        again.sort();
        let mut wanted: Vec<_> = expected.iter().map(|id| (*id).clone()).collect();
        wanted.sort();
        assert_eq!(again, wanted, "what {body} sent again");
        sent += expected.len();
        // Each sent again is recorded before the next step (whose rows are told apart by
        // the time they were changed).
        for id in expected {
            let count = attempts.entry(id.clone()).or_insert(0);
            *count += 1;
            let done = wait_attempts(&app, token, id, *count).await;
            assert_eq!(done["status"], "delivered", "{done}");
        }
    }
    assert_eq!(receiver.received().len(), sent);
}

async fn a_replay_of_several_statuses_counts_each_delivery_once(app: TestApp) {
    let merchant = app.create_merchant("Replay once").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    // The first delivery fails all three attempts; the second waits for a retry far off.
    receiver.script(&[500, 500, 500]);
    receiver.script_with_headers(503, &[("Retry-After", "3000")]);
    let ep = endpoint(&app, token, json!({ "url": receiver.url })).await;
    let failed = first_delivery(
        &app,
        token,
        &send_event(&app, token, "order.created", json!({})).await,
    )
    .await;
    wait_attempts(&app, token, &failed, 1).await;
    app.clock.advance(Duration::seconds(10));
    app.state.delivery.wake();
    wait_attempts(&app, token, &failed, 2).await;
    app.clock.advance(Duration::seconds(400));
    app.state.delivery.wake();
    wait_status(&app, token, &failed, "failed").await;
    let pending = first_delivery(
        &app,
        token,
        &send_event(&app, token, "order.updated", json!({})).await,
    )
    .await;
    let waiting = wait_attempts(&app, token, &pending, 1).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");

    let replayed = app
        .authed(
            Method::POST,
            &format!("/v1/endpoints/{}/replay", ep["id"].as_str().unwrap()),
            token,
        )
        .json(&json!({ "status": ["failed", "pending"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let answer: Value = replayed.json().await.unwrap();
    assert_eq!(answer["requeued"], 2, "{answer}");
    // The audit entry says the same.
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    let audited = chain
        .iter()
        .rev()
        .find(|e| e.action == "endpoint.replay")
        .expect("the replay is audited");
    let details: Value = serde_json::from_str(&audited.details).unwrap();
    assert_eq!(details["requeued"], 2, "{details}");
    // Each is sent once more (after three attempts and one), and both are delivered.
    wait_status(&app, token, &failed, "delivered").await;
    wait_status(&app, token, &pending, "delivered").await;
    assert_eq!(receiver.received().len(), 3 + 1 + 2);
}

async fn claims_queued_behind_a_gone_attempt_are_not_sent_to_the_endpoint(app: TestApp) {
    let merchant = app.create_merchant("Gone, claims queued").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    // Four deliveries fail their first attempt and come due again at about the same time.
    receiver.script(&[500, 500, 500, 500, 410]);
    let ep = endpoint(
        &app,
        token,
        json!({ "url": receiver.url, "max_in_flight": 1 }),
    )
    .await;
    let path = format!("/v1/endpoints/{}", ep["id"].as_str().unwrap());
    let mut deliveries = Vec::new();
    for n in 0..4 {
        let event = send_event(&app, token, "order.created", json!({ "n": n })).await;
        let delivery = first_delivery(&app, token, &event).await;
        wait_attempts(&app, token, &delivery, 1).await;
        deliveries.push(delivery);
    }
    // Past their retry time, one claim takes all four: the first is sent (and held at the
    // receiver), three queue behind it in memory.
    receiver.hold();
    app.clock.advance(Duration::seconds(10));
    app.state.delivery.wake();
    crate::helpers::wait_until(
        "one attempt held at the receiver and three claims queued behind it",
        std::time::Duration::from_secs(15),
        || async {
            (receiver.in_flight() == 1 && app.state.delivery.queued_claims() == 3).then_some(())
        },
    )
    .await;
    // The held attempt answers 410 Gone: the endpoint is disabled, and the three queued
    // claims go back to the database instead of being sent to it.
    receiver.release();
    crate::helpers::wait_until(
        "the queued claims given back",
        std::time::Duration::from_secs(15),
        || async {
            let leased = app
                .count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL")
                .await;
            (app.state.delivery.queued_claims() == 0 && leased == 0).then_some(())
        },
    )
    .await;
    let disabled = get_ok(&app, token, &path).await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    let sent: Vec<_> = receiver.received()[4..]
        .iter()
        .map(|r| r.header("x-hooksign-delivery-id").unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 1, "only the 410 attempt was sent");
    let gone = &sent[0];
    wait_status(&app, token, gone, "failed").await;
    let waiting: Vec<_> = deliveries.iter().filter(|id| *id != gone).collect();
    assert_eq!(waiting.len(), 3);
    for delivery in &waiting {
        let shown = get_ok(&app, token, &format!("/v1/deliveries/{delivery}")).await;
        assert_eq!(shown["status"], "paused", "{shown}");
        assert_eq!(shown["attempts"], 1, "{shown}");
    }
    // Switched on again, each of the three is delivered; the gone one is not re-sent.
    enable_endpoint(&app, token, ep["id"].as_str().unwrap()).await;
    for delivery in &waiting {
        let done = wait_status(&app, token, delivery, "delivered").await;
        assert_eq!(done["attempts"], 2, "{done}");
    }
    assert_eq!(receiver.received().len(), 4 + 1 + 3);
}
