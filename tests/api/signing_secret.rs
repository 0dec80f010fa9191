//! Signing secrets and rotation over HTTP: the state machine's every edge, the 48-hour window
//! on a manual clock, the scheduler (also with two daemons on one database), encryption at
//! rest, reveal, and the signing oracle.

use chrono::Duration;
use hooksign::verify::{MatchedHeader, Verifier};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp, TestMerchant};
use crate::on_both_stores;

on_both_stores!(
    status_shows_ids_and_fingerprints_but_no_values,
    a_full_rotation_initiate_complete_revert,
    rotation_commands_refuse_what_the_state_forbids,
    revert_works_until_the_window_ends_and_fails_one_second_after,
    concurrent_initiates_make_exactly_one_pending_secret,
    concurrent_completes_and_reverts_apply_once,
    scheduled_completion_runs_once_with_two_daemons,
    cron_policies_fire_once_with_two_daemons,
    schedule_input_is_validated,
    secrets_are_only_ciphertext_in_the_database,
    reveal_is_audited_and_needs_write_scope,
    the_signing_oracle_signs_with_active_and_pending_secrets,
    live_and_test_rotate_independently,
    rotation_scopes_are_enforced,
);

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.authed(method, path, token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn status(app: &TestApp, token: &str) -> Value {
    ok_json(call(app, token, Method::GET, "/v1/signing-secret", None).await).await
}

async fn initiate(app: &TestApp, token: &str) -> Value {
    ok_json(
        call(
            app,
            token,
            Method::POST,
            "/v1/signing-secret/initiate",
            None,
        )
        .await,
    )
    .await
}

async fn transition(app: &TestApp, token: &str, action: &str) -> reqwest::Response {
    call(
        app,
        token,
        Method::POST,
        &format!("/v1/signing-secret/{action}"),
        None,
    )
    .await
}

async fn reveal(app: &TestApp, merchant: &TestMerchant) -> Value {
    ok_json(transition(app, &merchant.live_token, "reveal").await).await
}

fn secret_rows_sql(merchant: &TestMerchant, state: &str) -> String {
    format!("SELECT COUNT(*) FROM signing_secrets WHERE merchant_id = '{}' AND mode = 'live' AND state = '{state}'", merchant.id)
}

async fn status_shows_ids_and_fingerprints_but_no_values(app: TestApp) {
    let merchant = app.create_merchant("Status").await;
    let body = status(&app, &merchant.live_token).await;
    assert_eq!(body["object"], "signing_secret");
    assert_eq!(body["livemode"], true);
    assert!(body["active"]["id"].as_str().unwrap().starts_with("sec_"));
    assert!(body["pending"].is_null() && body["previous"].is_null() && body["schedule"].is_null());
    let revealed = reveal(&app, &merchant).await;
    let secret = revealed["active"]["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 64);
    assert_eq!(
        body["active"]["fingerprint"],
        revealed["active"]["fingerprint"]
    );
    let expected = hooksign::secrets::SigningSecret::parse(secret)
        .unwrap()
        .fingerprint();
    assert_eq!(body["active"]["fingerprint"], expected.as_str());
    assert!(!body.to_string().contains(secret), "no value in the status");
    assert!(body["active"].get("secret").is_none());
}

async fn a_full_rotation_initiate_complete_revert(app: TestApp) {
    let merchant = app.create_merchant("Rotate").await;
    let original = status(&app, &merchant.live_token).await["active"].clone();
    let started = initiate(&app, &merchant.live_token).await;
    let pending = &started["pending"];
    let new_secret = pending["secret"].as_str().unwrap().to_owned();
    assert_eq!(new_secret.len(), 64);
    assert!(pending["whsec"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(started["active"]["id"], original["id"]);
    // Shown once: the status no longer carries it.
    let later = status(&app, &merchant.live_token).await;
    assert_eq!(later["pending"]["id"], pending["id"]);
    assert!(!later.to_string().contains(&new_secret));

    let completed = ok_json(transition(&app, &merchant.live_token, "complete").await).await;
    assert_eq!(completed["active"]["id"], pending["id"]);
    assert!(completed["pending"].is_null());
    assert_eq!(completed["previous"]["id"], original["id"]);
    let left = completed["previous"]["revert_seconds_left"]
        .as_i64()
        .unwrap();
    assert_eq!(left, 48 * 3600, "the default window is 48 hours");
    assert!(completed["previous"]["revert_until"].is_string());
    assert_eq!(
        reveal(&app, &merchant).await["active"]["secret"],
        new_secret.as_str()
    );

    let reverted = ok_json(transition(&app, &merchant.live_token, "revert").await).await;
    assert_eq!(reverted["active"]["id"], original["id"]);
    assert!(reverted["previous"].is_null());
    // The reverted-from secret is destroyed: its row is gone.
    let gone = app
        .count(&format!(
            "SELECT COUNT(*) FROM signing_secrets WHERE id = '{}'",
            pending["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(gone, 0);
    assert_error(
        transition(&app, &merchant.live_token, "revert").await,
        409,
        "invalid_request",
        "nothing_to_revert",
    )
    .await;

    // Initiate and cancel.
    let again = initiate(&app, &merchant.live_token).await;
    let cancelled = ok_json(transition(&app, &merchant.live_token, "cancel").await).await;
    assert!(cancelled["pending"].is_null());
    assert_eq!(cancelled["active"]["id"], original["id"]);
    let dropped = app
        .count(&format!(
            "SELECT COUNT(*) FROM signing_secrets WHERE id = '{}'",
            again["pending"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(dropped, 0);

    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    let actions: Vec<_> = chain
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| a.starts_with("signing_secret"))
        .collect();
    assert_eq!(
        actions,
        [
            "signing_secret.initiate",
            "signing_secret.complete",
            "signing_secret.reveal",
            "signing_secret.revert",
            "signing_secret.initiate",
            "signing_secret.cancel"
        ]
    );
    assert_eq!(
        hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &merchant.id)
            .await
            .unwrap(),
        chain
    );
    assert!(
        !format!("{chain:?}").contains(&new_secret),
        "no secret in the audit log"
    );
}

async fn rotation_commands_refuse_what_the_state_forbids(app: TestApp) {
    let merchant = app.create_merchant("Refuse").await;
    let token = &merchant.live_token;
    assert_error(
        transition(&app, token, "complete").await,
        409,
        "invalid_request",
        "no_pending_secret",
    )
    .await;
    assert_error(
        transition(&app, token, "cancel").await,
        409,
        "invalid_request",
        "no_pending_secret",
    )
    .await;
    assert_error(
        transition(&app, token, "revert").await,
        409,
        "invalid_request",
        "nothing_to_revert",
    )
    .await;
    for bad in [
        json!({ "complete_at": "tomorrow" }),
        json!({ "complete_at": "2001-01-01T00:00:00Z" }),
    ] {
        let response = call(
            &app,
            token,
            Method::POST,
            "/v1/signing-secret/initiate",
            Some(bad),
        )
        .await;
        assert_error(response, 422, "invalid_request", "invalid_complete_at").await;
    }
    let unknown = call(
        &app,
        token,
        Method::POST,
        "/v1/signing-secret/initiate",
        Some(json!({ "now": true })),
    )
    .await;
    assert_error(unknown, 422, "invalid_request", "invalid_body").await;
    assert_eq!(
        app.count(&secret_rows_sql(&merchant, "pending")).await,
        0,
        "bad input changed nothing"
    );
    initiate(&app, token).await;
    assert_error(
        transition(&app, token, "initiate").await,
        409,
        "invalid_request",
        "rotation_in_progress",
    )
    .await;
    ok_json(transition(&app, token, "complete").await).await;
    initiate(&app, token).await;
    assert_error(
        transition(&app, token, "revert").await,
        409,
        "invalid_request",
        "rotation_in_progress",
    )
    .await;
}

async fn revert_works_until_the_window_ends_and_fails_one_second_after(app: TestApp) {
    let merchant = app.create_merchant("Window").await;
    let token = &merchant.live_token;
    let original = status(&app, token).await["active"]["id"].clone();
    initiate(&app, token).await;
    ok_json(transition(&app, token, "complete").await).await;
    app.clock.advance(Duration::hours(48));
    let body = status(&app, token).await;
    assert_eq!(body["previous"]["revert_seconds_left"], 0);
    // Exactly at revert_until it still works.
    let reverted = ok_json(transition(&app, token, "revert").await).await;
    assert_eq!(reverted["active"]["id"], original);

    initiate(&app, token).await;
    ok_json(transition(&app, token, "complete").await).await;
    app.clock
        .advance(Duration::hours(48) + Duration::seconds(1));
    // One second late: refused although the sweeper has not run.
    assert_eq!(
        app.count(&secret_rows_sql(&merchant, "previous")).await,
        1,
        "row still there"
    );
    assert_error(
        transition(&app, token, "revert").await,
        409,
        "invalid_request",
        "revert_window_expired",
    )
    .await;
    assert!(
        status(&app, token).await["previous"].is_null(),
        "an expired previous secret is not shown"
    );
    // The sweeper destroys the material and says so in the audit log.
    let report = app.state.scheduler.tick().await;
    assert_eq!(report.destroyed, 1);
    assert_eq!(app.count(&secret_rows_sql(&merchant, "previous")).await, 0);
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    let last = chain.last().unwrap();
    assert_eq!(last.action, "signing_secret.destroy");
    assert!(last.actor_key_id.is_none());
}

async fn concurrent_initiates_make_exactly_one_pending_secret(app: TestApp) {
    let merchant = app.create_merchant("Concurrent").await;
    let requests: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(
                app.authed(
                    Method::POST,
                    "/v1/signing-secret/initiate",
                    &merchant.live_token,
                )
                .send(),
            )
        })
        .collect();
    let mut started = 0;
    for request in requests {
        let response = request.await.unwrap().unwrap();
        if response.status() == 200 {
            started += 1;
        } else {
            assert_error(response, 409, "invalid_request", "rotation_in_progress").await;
        }
    }
    assert_eq!(started, 1, "one initiate wins, nine are refused");
    assert_eq!(app.count(&secret_rows_sql(&merchant, "pending")).await, 1);
}

async fn concurrent_completes_and_reverts_apply_once(app: TestApp) {
    let merchant = app.create_merchant("Once").await;
    initiate(&app, &merchant.live_token).await;
    let fire = |action: &'static str| {
        (0..6)
            .map(|_| {
                tokio::spawn(
                    app.authed(
                        Method::POST,
                        &format!("/v1/signing-secret/{action}"),
                        &merchant.live_token,
                    )
                    .send(),
                )
            })
            .collect::<Vec<_>>()
    };
    for (action, refusal) in [
        ("complete", "no_pending_secret"),
        ("revert", "nothing_to_revert"),
    ] {
        let mut ok = 0;
        for request in fire(action) {
            let response = request.await.unwrap().unwrap();
            if response.status() == 200 {
                ok += 1;
            } else {
                assert_error(response, 409, "invalid_request", refusal).await;
            }
        }
        assert_eq!(ok, 1, "{action} applied exactly once");
    }
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM signing_secrets WHERE merchant_id = '{}' AND mode = 'live'",
            merchant.id
        ))
        .await,
        1
    );
    assert_eq!(app.count(&secret_rows_sql(&merchant, "active")).await, 1);
}

async fn scheduled_completion_runs_once_with_two_daemons(app: TestApp) {
    let merchant = app.create_merchant("Scheduled").await;
    let complete_at = hooksign::clock::rfc3339(app.clock_now() + Duration::hours(1));
    let started = ok_json(
        call(
            &app,
            &merchant.live_token,
            Method::POST,
            "/v1/signing-secret/initiate",
            Some(json!({ "complete_at": complete_at })),
        )
        .await,
    )
    .await;
    assert_eq!(started["pending"]["complete_at"], complete_at.as_str());
    let other = app.another_instance_state().await;
    assert_eq!(app.state.scheduler.tick().await.completed, 0, "not due yet");
    app.clock.advance(Duration::hours(1));
    let (a, b) = tokio::join!(app.state.scheduler.tick(), other.scheduler.tick());
    assert_eq!(
        a.completed + b.completed,
        1,
        "exactly one daemon completed it"
    );
    let body = status(&app, &merchant.live_token).await;
    assert_eq!(body["active"]["id"], started["pending"]["id"]);
    assert!(body["pending"].is_null());
}

async fn cron_policies_fire_once_with_two_daemons(app: TestApp) {
    let merchant = app.create_merchant("Cron").await;
    let set = call(
        &app,
        &merchant.live_token,
        Method::PUT,
        "/v1/signing-secret/schedule",
        Some(json!({ "cron": "0 0 * * * *", "grace": 600 })),
    )
    .await;
    let body = ok_json(set).await;
    assert_eq!(body["schedule"]["cron"], "0 0 * * * *");
    assert_eq!(body["schedule"]["grace_seconds"], 600);
    let next: chrono::DateTime<chrono::Utc> = body["schedule"]["next_fire_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let other = app.another_instance_state().await;
    app.clock.advance(next - app.clock_now());
    let (a, b) = tokio::join!(app.state.scheduler.tick(), other.scheduler.tick());
    assert_eq!(a.initiated + b.initiated, 1, "fired once");
    let body = status(&app, &merchant.live_token).await;
    assert!(body["pending"].is_object());
    let complete_at: chrono::DateTime<chrono::Utc> = body["pending"]["complete_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(complete_at, next + Duration::seconds(600));
    assert_eq!(
        body["schedule"]["next_fire_at"],
        hooksign::clock::rfc3339(next + Duration::hours(1))
    );
    app.clock.advance(Duration::seconds(600));
    assert_eq!(app.state.scheduler.tick().await.completed, 1);
    let body = status(&app, &merchant.live_token).await;
    assert!(body["pending"].is_null() && body["previous"].is_object());
    let deleted = ok_json(
        call(
            &app,
            &merchant.live_token,
            Method::DELETE,
            "/v1/signing-secret/schedule",
            None,
        )
        .await,
    )
    .await;
    assert!(deleted["schedule"].is_null());
    let again = call(
        &app,
        &merchant.live_token,
        Method::DELETE,
        "/v1/signing-secret/schedule",
        None,
    )
    .await;
    assert_error(again, 404, "invalid_request", "resource_missing").await;
}

async fn schedule_input_is_validated(app: TestApp) {
    let merchant = app.create_merchant("Cron input").await;
    let cases = [
        (
            json!({ "cron": "0 0 3 * * x", "grace": 600 }),
            "invalid_cron",
        ),
        (json!({ "cron": "0 3 * * *", "grace": 600 }), "invalid_cron"),
        (
            json!({ "cron": "0 0 3 * * *", "grace": 5 }),
            "invalid_grace",
        ),
        (
            json!({ "cron": "0 0 3 * * *", "grace": 40_000_000 }),
            "invalid_grace",
        ),
        (json!({ "cron": "0 0 3 * * *" }), "invalid_body"),
        (
            json!({ "cron": "0 0 3 * * *", "grace": "1h" }),
            "invalid_body",
        ),
    ];
    for (body, code) in cases {
        let response = call(
            &app,
            &merchant.live_token,
            Method::PUT,
            "/v1/signing-secret/schedule",
            Some(body.clone()),
        )
        .await;
        let error = assert_error(response, 422, "invalid_request", code).await;
        if code == "invalid_cron" && body["cron"] == "0 0 3 * * x" {
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("day of the week"),
                "the parser's reason: {error}"
            );
        }
    }
    assert!(status(&app, &merchant.live_token).await["schedule"].is_null());
}

async fn secrets_are_only_ciphertext_in_the_database(app: TestApp) {
    let merchant = app.create_merchant("Sealed").await;
    let started = initiate(&app, &merchant.live_token).await;
    let pending = started["pending"]["secret"].as_str().unwrap().to_owned();
    let active = reveal(&app, &merchant).await["active"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let rows = app
        .state
        .store
        .signing_secrets(merchant.id.parse().unwrap(), hooksign::keys::Mode::Live)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        for secret in [&pending, &active] {
            assert!(!row
                .ciphertext
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()));
            assert!(!row
                .ciphertext
                .windows(32)
                .any(|w| hex::encode(w) == **secret));
        }
    }
    // Every column of every table (read from the schema), as text or raw bytes.
    for stored in crate::at_rest::stored_values(&app).await {
        crate::at_rest::assert_no_secret(&stored, &[pending.clone(), active.clone()]);
    }
}

async fn reveal_is_audited_and_needs_write_scope(app: TestApp) {
    let merchant = app.create_merchant("Reveal").await;
    let reader = call(
        &app,
        &merchant.live_token,
        Method::POST,
        "/v1/api-keys",
        Some(json!({ "name": "reader", "scopes": ["signing_secret:read"] })),
    )
    .await;
    let reader: Value = reader.json().await.unwrap();
    let reader_token = reader["token"].as_str().unwrap();
    assert_eq!(
        call(&app, reader_token, Method::GET, "/v1/signing-secret", None)
            .await
            .status(),
        200
    );
    let denied = transition(&app, reader_token, "reveal").await;
    let body = assert_error(denied, 403, "permission", "missing_scope").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signing_secret:write"));
    let started = initiate(&app, &merchant.live_token).await;
    let shown = reveal(&app, &merchant).await;
    assert_eq!(shown["object"], "signing_secret_reveal");
    assert_eq!(shown["pending"]["secret"], started["pending"]["secret"]);
    assert_eq!(shown["pending"]["whsec"], started["pending"]["whsec"]);
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    let reveal_event = chain
        .iter()
        .rev()
        .find(|e| e.action == "signing_secret.reveal")
        .expect("reveal audited");
    assert_eq!(
        reveal_event.actor_key_id.as_deref(),
        merchant.body["api_keys"][0]["id"].as_str()
    );
    assert!(!reveal_event
        .details
        .contains(shown["active"]["secret"].as_str().unwrap()));
}

async fn the_signing_oracle_signs_with_active_and_pending_secrets(app: TestApp) {
    let merchant = app.create_merchant("Oracle").await;
    let body = br#"{"type":"order.created","amount":1299}"#.to_vec();
    let sign = |scheme: &str| {
        app.authed(
            Method::POST,
            &format!("/v1/sign?scheme={scheme}&id=msg_1"),
            &merchant.live_token,
        )
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
    };
    let old = reveal(&app, &merchant).await["active"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = ok_json(sign("bolt").await.unwrap()).await;
    assert_eq!(signed["pending"], false);
    let headers: Vec<(String, String)> = signed["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(headers.len(), 1);
    Verifier::new([&old])
        .unwrap()
        .verify_bolt(headers.as_slice(), &body)
        .expect("the active secret verifies");

    let new = initiate(&app, &merchant.live_token).await["pending"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = ok_json(sign("bolt").await.unwrap()).await;
    assert_eq!(signed["pending"], true);
    let headers: Vec<(String, String)> = signed["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(headers.len(), 2);
    let by_old = Verifier::new([&old])
        .unwrap()
        .verify_bolt(headers.as_slice(), &body)
        .unwrap();
    assert_eq!(by_old.header, MatchedHeader::Bolt);
    let by_new = Verifier::new([&new])
        .unwrap()
        .verify_bolt(headers.as_slice(), &body)
        .unwrap();
    assert_eq!(by_new.header, MatchedHeader::BoltPending);

    let standard = ok_json(sign("standard").await.unwrap()).await;
    let headers: Vec<(String, String)> = standard["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(standard["headers"]["webhook-id"], "msg_1");
    let now = app.clock_now().timestamp();
    Verifier::new([&new])
        .unwrap()
        .verify_standard(headers.as_slice(), &body, now)
        .expect("pending v1 entry verifies");
    assert_error(
        sign("fancy").await.unwrap(),
        400,
        "invalid_request",
        "invalid_query",
    )
    .await;
    let reader = call(
        &app,
        &merchant.live_token,
        Method::POST,
        "/v1/api-keys",
        Some(json!({ "name": "r", "scopes": ["events:read"] })),
    )
    .await;
    let reader: Value = reader.json().await.unwrap();
    let denied = app
        .authed(Method::POST, "/v1/sign", reader["token"].as_str().unwrap())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(denied, 403, "permission", "missing_scope").await;
}

async fn live_and_test_rotate_independently(app: TestApp) {
    let merchant = app.create_merchant("Modes").await;
    let test_before = status(&app, &merchant.test_token).await;
    initiate(&app, &merchant.live_token).await;
    ok_json(transition(&app, &merchant.live_token, "complete").await).await;
    let test_after = status(&app, &merchant.test_token).await;
    assert_eq!(test_before, test_after);
    assert_eq!(test_after["livemode"], false);
    assert_error(
        transition(&app, &merchant.test_token, "revert").await,
        409,
        "invalid_request",
        "nothing_to_revert",
    )
    .await;
}

async fn rotation_scopes_are_enforced(app: TestApp) {
    let merchant = app.create_merchant("Scoped").await;
    let key = |scopes: &'static [&'static str]| {
        let app = &app;
        let token = merchant.live_token.clone();
        async move {
            let created = call(
                app,
                &token,
                Method::POST,
                "/v1/api-keys",
                Some(json!({ "name": scopes.join(" "), "scopes": scopes })),
            )
            .await;
            let created = ok_or_created(created).await;
            created["token"].as_str().unwrap().to_owned()
        }
    };
    let reader = key(&["signing_secret:read"]).await;
    let writer = key(&["signing_secret:write"]).await;
    let neither = key(&["api_keys:read"]).await;
    let schedule = json!({ "cron": "0 * * * * *", "grace": 600 });
    // Every change, in an order in which each succeeds for a key that may make it.
    let writes = [
        (Method::POST, "/v1/signing-secret/initiate", None),
        (Method::POST, "/v1/signing-secret/reveal", None),
        (Method::POST, "/v1/signing-secret/complete", None),
        (Method::POST, "/v1/signing-secret/revert", None),
        (Method::POST, "/v1/signing-secret/initiate", None),
        (Method::POST, "/v1/signing-secret/cancel", None),
        (Method::PUT, "/v1/signing-secret/schedule", Some(schedule)),
        (Method::DELETE, "/v1/signing-secret/schedule", None),
    ];
    let refused = |response: reqwest::Response, scope: &'static str| async move {
        let body = assert_error(response, 403, "permission", "missing_scope").await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{scope}`")), "{body}");
    };
    let audited = "SELECT COUNT(*) FROM audit_events WHERE action LIKE 'signing_secret.%'";
    let audited_before = app.count(audited).await;

    // A read-only key sees the status and changes nothing.
    let seen = status(&app, &reader).await;
    assert_eq!(
        seen["active"]["id"],
        status(&app, &merchant.live_token).await["active"]["id"]
    );
    for (method, path, body) in &writes {
        let response = call(&app, &reader, method.clone(), path, body.clone()).await;
        refused(response, "signing_secret:write").await;
    }
    assert_eq!(app.count(&secret_rows_sql(&merchant, "pending")).await, 0);
    assert_eq!(app.count(audited).await, audited_before, "nothing happened");

    // A write-only key makes every change but cannot read the status.
    let read = call(&app, &writer, Method::GET, "/v1/signing-secret", None).await;
    refused(read, "signing_secret:read").await;
    for (method, path, body) in &writes {
        let response = call(&app, &writer, method.clone(), path, body.clone()).await;
        let status = response.status();
        let answer = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
    }
    assert!(app.count(audited).await > audited_before);

    // A key with neither scope gets neither.
    let read = call(&app, &neither, Method::GET, "/v1/signing-secret", None).await;
    refused(read, "signing_secret:read").await;
    for (method, path, body) in &writes {
        let response = call(&app, &neither, method.clone(), path, body.clone()).await;
        refused(response, "signing_secret:write").await;
    }
}

/// A 200 or 201 answer, as JSON.
async fn ok_or_created(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!([200, 201].contains(&status.as_u16()), "{status}: {body}");
    body
}
