//! Receivers that misbehave (issue 15, item 11): each attempt is recorded with its error class
//! and retried on the schedule, a healthy endpoint of the same merchant gets its deliveries
//! meanwhile, a 100 MB answer is read only as far as the stored excerpt, and a receiver with a
//! bad certificate is refused unless a test-mode endpoint turned verification off.
//!
//! The endpoints here time out after 1 s and the retry schedule has no jitter, so the next
//! attempt is due exactly 5 s (then 300 s) after an attempt, on the app's manual clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hooksign::config::Config;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_rustls::rustls;

use crate::delivery::{endpoint, send_event};
use crate::helpers::{assert_error, get_ok, TestApp, TestMerchant};
use crate::on_both_stores;
use crate::receiver::{BadReceiver, Misbehaviour, Receiver, HUGE_BODY_BYTES};

on_both_stores!(
    configure = super::no_jitter;
    a_receiver_that_never_answers_times_out_and_is_retried,
    a_receiver_that_resets_mid_answer_is_a_connection_reset,
    a_receiver_that_trickles_its_answer_times_out,
    a_receiver_that_trickles_its_body_times_out,
    a_hundred_megabyte_answer_is_read_only_to_the_excerpt,
    a_receiver_speaking_garbage_is_a_protocol_error,
    self_signed_and_expired_certificates_are_refused,
    a_test_mode_endpoint_may_turn_certificate_checks_off,
    live_mode_endpoints_always_verify_certificates,
);

/// No jitter, so retries are due exactly on the schedule; and no rate limit to speak of, as
/// the tests poll deliveries while the manual clock stands still.
fn no_jitter(config: &mut Config) {
    config.delivery.retry_jitter = 0.0;
    config.auth.rate_per_sec = 100_000;
    config.auth.burst = 100_000;
}

/// The bad endpoints' timeout: long enough that the healthy endpoint's delivery lands while a
/// holding receiver still holds its connection, even on a loaded 2-core CI machine.
const TIMEOUT_MS: u64 = 2_500;

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("{value} is no time")),
    )
    .unwrap()
    .with_timezone(&Utc)
}

/// A merchant with a healthy endpoint; `bad` is given an endpoint (test mode, [`TIMEOUT_MS`])
/// for each URL. Sends one event, which fans out to all of them; returns the merchant and the
/// delivery to each bad endpoint, in order.
async fn one_event_to_each(
    app: &TestApp,
    healthy: &Receiver,
    bad: &[&str],
) -> (TestMerchant, Vec<String>) {
    let merchant = app.create_merchant("Misbehaving receivers").await;
    let token = &merchant.test_token;
    endpoint(app, token, json!({ "url": healthy.url })).await;
    let mut endpoints = Vec::new();
    for url in bad {
        let created = endpoint(app, token, json!({ "url": url, "timeout_ms": TIMEOUT_MS })).await;
        endpoints.push(created["id"].as_str().unwrap().to_owned());
    }
    let event = send_event(app, token, "order.created", json!({ "n": 1 })).await;
    let path = format!("/v1/events/{}", event["id"].as_str().unwrap());
    let deliveries = get_ok(app, token, &path).await["deliveries"].clone();
    let deliveries = endpoints
        .iter()
        .map(|id| {
            let delivery = deliveries
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["endpoint_id"] == id.as_str())
                .unwrap_or_else(|| panic!("no delivery to {id}: {deliveries}"));
            delivery["id"].as_str().unwrap().to_owned()
        })
        .collect();
    (merchant, deliveries)
}

/// Waits (up to 20 s, polling every 100 ms) until
/// `delivery` has made `attempts` attempts; the delivery with its attempts.
async fn after_attempts(app: &TestApp, token: &str, delivery: &str, attempts: u64) -> Value {
    let path = format!("/v1/deliveries/{delivery}");
    for _ in 0..200 {
        app.state.delivery.wake();
        let body = get_ok(app, token, &path).await;
        if body["attempts"] == attempts
            && body["attempt_history"][attempts as usize - 1].is_object()
        {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{delivery} did not make {attempts} attempts in 20 s");
}

/// Asserts each delivery's first attempt failed with `class` and that it was retried on the
/// schedule (5 s, then 300 s after each attempt), failing the same way the second time;
/// returns the deliveries after their first attempt.
async fn assert_retried_on_schedule(
    app: &TestApp,
    token: &str,
    deliveries: &[String],
    class: &str,
) -> Vec<Value> {
    let mut firsts = Vec::new();
    for delivery in deliveries {
        let first = after_attempts(app, token, delivery, 1).await;
        let attempt = &first["attempt_history"][0];
        assert_eq!(attempt["error_class"], class, "{first}");
        assert_eq!(attempt["status_code"], Value::Null, "{first}");
        assert_eq!(first["status"], "pending", "{first}");
        assert_eq!(
            time(&first["next_attempt_at"]) - time(&attempt["started_at"]),
            Duration::seconds(5),
            "the first retry is due on the schedule: {first}"
        );
        firsts.push(first);
    }
    app.clock.advance(Duration::seconds(5));
    for delivery in deliveries {
        let second = after_attempts(app, token, delivery, 2).await;
        let again = &second["attempt_history"][1];
        assert_eq!(again["error_class"], class, "{second}");
        assert_eq!(second["status"], "pending", "{second}");
        assert_eq!(
            time(&second["next_attempt_at"]) - time(&again["started_at"]),
            Duration::seconds(300),
            "the second retry is due on the schedule: {second}"
        );
    }
    firsts
}

/// One bad receiver that holds its connection: its attempt fails with `class`, and the
/// healthy endpoint got the event before the bad connection ended.
async fn a_holding_receiver_fails_with(app: TestApp, kind: Misbehaviour, class: &str) -> Value {
    let healthy = Receiver::start().await;
    let bad = BadReceiver::start(kind, Some(healthy.clone())).await;
    let (merchant, deliveries) = one_event_to_each(&app, &healthy, &[&bad.url]).await;
    let first = assert_retried_on_schedule(&app, &merchant.test_token, &deliveries, class)
        .await
        .remove(0);
    assert!(
        bad.watched_when_first_connection_closed().await >= 1,
        "the healthy endpoint got nothing while the bad one held its connection"
    );
    assert_eq!(
        healthy.received().len(),
        1,
        "one delivery to the healthy endpoint"
    );
    assert_eq!(bad.connections(), 2, "one connection per attempt");
    first
}

/// One bad receiver that fails at once: its attempt fails with `class`, and the healthy
/// endpoint gets its delivery.
async fn a_failing_receiver_fails_with(app: TestApp, kind: Misbehaviour, class: &str) -> Value {
    let healthy = Receiver::start().await;
    let bad = BadReceiver::start(kind, None).await;
    let (merchant, deliveries) = one_event_to_each(&app, &healthy, &[&bad.url]).await;
    let first = assert_retried_on_schedule(&app, &merchant.test_token, &deliveries, class)
        .await
        .remove(0);
    healthy.wait_for(1).await;
    assert_eq!(bad.connections(), 2, "one connection per attempt");
    first
}

async fn a_receiver_that_never_answers_times_out_and_is_retried(app: TestApp) {
    a_holding_receiver_fails_with(app, Misbehaviour::Silent, "timeout").await;
}

async fn a_receiver_that_resets_mid_answer_is_a_connection_reset(app: TestApp) {
    let first =
        a_failing_receiver_fails_with(app, Misbehaviour::ResetMidAnswer, "connection_reset").await;
    assert_ne!(first["attempt_history"][0]["response_body"], "", "{first}");
}

async fn a_receiver_that_trickles_its_answer_times_out(app: TestApp) {
    a_holding_receiver_fails_with(app, Misbehaviour::TrickleHead, "timeout").await;
}

/// The head arrives at once, so only a timeout over the whole exchange (body included) ends
/// the attempt; a 200 whose body never finished is no answer.
async fn a_receiver_that_trickles_its_body_times_out(app: TestApp) {
    a_holding_receiver_fails_with(app, Misbehaviour::TrickleBody, "timeout").await;
}

async fn a_hundred_megabyte_answer_is_read_only_to_the_excerpt(app: TestApp) {
    let healthy = Receiver::start().await;
    let bad = BadReceiver::start(Misbehaviour::HugeBody, Some(healthy.clone())).await;
    let (merchant, deliveries) = one_event_to_each(&app, &healthy, &[&bad.url]).await;
    let delivered = after_attempts(&app, &merchant.test_token, &deliveries[0], 1).await;
    assert_eq!(
        delivered["status"], "delivered",
        "a 200 is an answer: {delivered}"
    );
    let attempt = &delivered["attempt_history"][0];
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["error_class"], Value::Null);
    let excerpt = attempt["response_body"].as_str().unwrap();
    assert_eq!(
        excerpt,
        "x".repeat(1024),
        "the stored body is the first KiB"
    );
    // The connection ends when the daemon stops reading and closes it; the receiver could not
    // write the rest (its writes fail once the socket buffers are full or it is reset).
    bad.watched_when_first_connection_closed().await;
    assert!(bad.written() >= 1024, "{} bytes written", bad.written());
    assert!(
        bad.written() < HUGE_BODY_BYTES,
        "the daemon read all {} bytes",
        bad.written()
    );
    healthy.wait_for(1).await;
}

async fn a_receiver_speaking_garbage_is_a_protocol_error(app: TestApp) {
    a_failing_receiver_fails_with(app, Misbehaviour::Garbage, "protocol_error").await;
}

/// A TLS receiver for `127.0.0.1` and `localhost` with a self-signed certificate, expired
/// (valid only in 2020) or not.
fn tls_receiver_config(expired: bool) -> Arc<rustls::ServerConfig> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let cert = params.self_signed(&key).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .unwrap();
    Arc::new(config)
}

async fn tls_receiver(expired: bool) -> BadReceiver {
    BadReceiver::start(Misbehaviour::Tls(tls_receiver_config(expired)), None).await
}

async fn self_signed_and_expired_certificates_are_refused(app: TestApp) {
    let healthy = Receiver::start().await;
    let (self_signed, expired) = (tls_receiver(false).await, tls_receiver(true).await);
    let (merchant, deliveries) =
        one_event_to_each(&app, &healthy, &[&self_signed.url, &expired.url]).await;
    let token = &merchant.test_token;
    let firsts = assert_retried_on_schedule(&app, token, &deliveries, "tls_error").await;
    for (first, reason) in firsts.iter().zip(["UnknownIssuer", "certificate expired"]) {
        let excerpt = first["attempt_history"][0]["response_body"]
            .as_str()
            .unwrap();
        assert!(excerpt.contains(reason), "{reason} in {excerpt}");
    }
    assert_eq!(self_signed.answered() + expired.answered(), 0);
    assert!(self_signed.connections() >= 2 && expired.connections() >= 2);
    healthy.wait_for(1).await;
}

/// Only the endpoint's audit events with `action`, newest first.
async fn audited(app: &TestApp, token: &str, action: &str, target: &str) -> Vec<Value> {
    let events = get_ok(app, token, "/v1/audit-events?limit=100").await;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .cloned()
        .collect()
}

async fn a_test_mode_endpoint_may_turn_certificate_checks_off(app: TestApp) {
    let merchant = app.create_merchant("Self-signed receivers").await;
    let token = &merchant.test_token;
    let (self_signed, expired) = (tls_receiver(false).await, tls_receiver(true).await);
    let created = endpoint(
        &app,
        token,
        json!({ "url": self_signed.url, "tls_verify": false, "timeout_ms": TIMEOUT_MS }),
    )
    .await;
    assert_eq!(created["tls_verify"], false, "{created}");
    let id = created["id"].as_str().unwrap();
    let create = audited(&app, token, "endpoint.create", id).await;
    assert_eq!(create[0]["details"]["tls_verify"], false, "{create:?}");
    // Switched off later, on an endpoint created with the default.
    let later = endpoint(&app, token, json!({ "url": expired.url })).await;
    assert_eq!(later["tls_verify"], true, "verified unless told otherwise");
    let later_id = later["id"].as_str().unwrap();
    let patched = app
        .authed(Method::PATCH, &format!("/v1/endpoints/{later_id}"), token)
        .json(&json!({ "tls_verify": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.json::<Value>().await.unwrap()["tls_verify"], false);
    let update = audited(&app, token, "endpoint.update", later_id).await;
    assert_eq!(update[0]["details"]["tls_verify"], false, "{update:?}");
    let shown = get_ok(&app, token, &format!("/v1/endpoints/{later_id}")).await;
    assert_eq!(shown["tls_verify"], false);

    let event = send_event(&app, token, "order.created", json!({})).await;
    let path = format!("/v1/events/{}", event["id"].as_str().unwrap());
    let deliveries = get_ok(&app, token, &path).await["deliveries"].clone();
    for delivery in deliveries.as_array().unwrap() {
        let id = delivery["id"].as_str().unwrap();
        let done = after_attempts(&app, token, id, 1).await;
        assert_eq!(done["status"], "delivered", "{done}");
    }
    assert_eq!((self_signed.answered(), expired.answered()), (1, 1));
}

async fn live_mode_endpoints_always_verify_certificates(app: TestApp) {
    let merchant = app.create_merchant("Live receivers").await;
    let token = &merchant.live_token;
    let receiver = tls_receiver(false).await;
    let refused = app
        .authed(Method::POST, "/v1/endpoints", token)
        .json(&json!({ "url": receiver.url, "tls_verify": false }))
        .send()
        .await
        .unwrap();
    assert_error(refused, 422, "invalid_request", "tls_verify_test_mode_only").await;
    let endpoints = "SELECT COUNT(*) FROM endpoints";
    assert_eq!(app.count(endpoints).await, 0, "nothing was created");

    let created = endpoint(
        &app,
        token,
        json!({ "url": receiver.url, "timeout_ms": TIMEOUT_MS, "tls_verify": true }),
    )
    .await;
    assert_eq!(created["tls_verify"], true);
    let id = created["id"].as_str().unwrap();
    let refused = app
        .authed(Method::PATCH, &format!("/v1/endpoints/{id}"), token)
        .json(&json!({ "tls_verify": false, "description": "sneaky" }))
        .send()
        .await
        .unwrap();
    assert_error(refused, 422, "invalid_request", "tls_verify_test_mode_only").await;
    let shown = get_ok(&app, token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(
        (shown["tls_verify"].clone(), shown["description"].clone()),
        (json!(true), json!(""))
    );
    assert!(audited(&app, token, "endpoint.update", id).await.is_empty());

    // A row switched off behind the API's back is still verified: live events never go to a
    // receiver whose certificate nobody checked.
    app.execute(&format!(
        "UPDATE endpoints SET tls_verify = FALSE WHERE id = '{id}'"
    ))
    .await
    .unwrap();
    let event = send_event(&app, token, "order.created", json!({})).await;
    let path = format!("/v1/events/{}", event["id"].as_str().unwrap());
    let delivery = get_ok(&app, token, &path).await["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = after_attempts(&app, token, &delivery, 1).await;
    assert_eq!(
        failed["attempt_history"][0]["error_class"], "tls_error",
        "{failed}"
    );
    assert_eq!(receiver.answered(), 0);
}
