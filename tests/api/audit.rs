//! The audit log over HTTP, and `hooksign audit verify` catching a tampered row.

use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp};
use crate::on_both_stores;

on_both_stores!(
    audit_events_list_the_modes_history_without_secrets,
    audit_verify_finds_a_tampered_entry
);

async fn audit_events_list_the_modes_history_without_secrets(app: TestApp) {
    let merchant = app.create_merchant("Audit").await;
    let started = app
        .authed(
            Method::POST,
            "/v1/signing-secret/initiate",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    let secret = started.json::<Value>().await.unwrap()["pending"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    app.authed(
        Method::POST,
        "/v1/signing-secret/reveal",
        &merchant.test_token,
    )
    .send()
    .await
    .unwrap();
    app.authed(Method::POST, "/v1/api-keys", &merchant.live_token)
        .json(&json!({ "name": "live only" }))
        .send()
        .await
        .unwrap();

    let test: Value = app
        .authed(
            Method::GET,
            "/v1/audit-events?limit=100",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<_> = test["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "signing_secret.reveal",
            "signing_secret.initiate",
            "merchant.create"
        ],
        "newest first, test mode and merchant-wide only"
    );
    let reveal = &test["data"][0];
    assert_eq!(reveal["object"], "audit_event");
    assert_eq!(reveal["livemode"], false);
    assert_eq!(reveal["actor_key_id"], merchant.body["api_keys"][1]["id"]);
    assert!(reveal["request_id"].as_str().unwrap().starts_with("req_"));
    assert!(
        !test.to_string().contains(&secret),
        "no secret in the audit log"
    );
    let live: Value = app
        .authed(Method::GET, "/v1/audit-events", &merchant.live_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(live["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "api_key.create"));
    assert!(!live["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"].as_str().unwrap().starts_with("signing_secret")));
    let filtered: Value = app
        .authed(
            Method::GET,
            "/v1/audit-events?action=signing_secret.initiate",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let page: Value = app
        .authed(
            Method::GET,
            "/v1/audit-events?limit=1",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["has_more"], true);
    let reader = app
        .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
        .json(&json!({ "name": "no audit", "scopes": ["events:read"] }))
        .send()
        .await
        .unwrap();
    let reader: Value = reader.json().await.unwrap();
    let denied = app
        .authed(
            Method::GET,
            "/v1/audit-events",
            reader["token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_error(denied, 403, "permission", "missing_scope").await;
    let bad = app
        .authed(
            Method::GET,
            "/v1/audit-events?limit=0",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "invalid_request", "invalid_limit").await;
}

async fn audit_verify_finds_a_tampered_entry(app: TestApp) {
    let merchant = app.create_merchant("Tamper").await;
    app.authed(
        Method::POST,
        "/v1/signing-secret/initiate",
        &merchant.test_token,
    )
    .send()
    .await
    .unwrap();
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_hooksign"))
            .args(["audit", "verify"])
            .env("HOOKSIGN_DATABASE__URL", &app.config.database.url)
            .env_remove("HOOKSIGN_MASTER_KEY")
            .current_dir(app.data_dir.parent().unwrap())
            .output()
            .unwrap()
    };
    let intact = verify();
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );
    assert!(String::from_utf8(intact.stdout).unwrap().contains("intact"));
    let tamper = format!(
        "UPDATE audit_events SET target = 'someone else' WHERE chain = '{}' AND seq = 1",
        merchant.id
    );
    app.execute(&tamper).await.unwrap();
    let broken = verify();
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8(broken.stderr).unwrap();
    assert!(
        stderr.contains("BROKEN") && stderr.contains("altered"),
        "{stderr}"
    );
}
