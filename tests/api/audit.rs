//! The audit log over HTTP, and `hooksign audit verify` catching a tampered row.

use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, OutputWithin as _, TestApp};
use crate::on_both_stores;

on_both_stores!(
    audit_events_list_the_modes_history_without_secrets,
    audit_verify_finds_a_tampered_entry,
    audit_verify_finds_an_edit_whose_plain_hashes_were_recomputed,
    audit_verify_finds_a_deleted_last_entry,
    audit_head_anchors_find_a_truncation_that_rewound_the_head,
    legacy_unkeyed_chains_are_rechained_once_at_the_upgrade,
    audit_verify_finds_a_deleted_middle_entry,
    audit_verify_finds_reordered_entries,
    audit_verify_finds_a_tampered_operator_entry,
);

/// Runs `hooksign ARGS` on the app's database with its master key.
fn hooksign_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hooksign"))
        .args(args)
        .env("HOOKSIGN_DATABASE__URL", &app.config.database.url)
        .env(
            "HOOKSIGN_MASTER_KEY",
            &app.config
                .master_key
                .as_ref()
                .expect("tests set a master key")
                .0,
        )
        .current_dir(app.data_dir.parent().unwrap())
        .output_within(crate::helpers::CHILD_DEADLINE)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A merchant with three audited actions (create, two keys); returns its id and test token.
async fn audited_merchant(app: &TestApp) -> (String, String) {
    let merchant = app.create_merchant("Chained").await;
    for name in ["one", "two"] {
        let created = app
            .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    (merchant.id, merchant.test_token)
}

/// The SQL an attacker without the master key runs to rewrite `chain` from entry `from` on:
/// new details for that entry, then every hash recomputed with the plain SHA-256 chain.
async fn rewrite_with_plain_hashes(app: &TestApp, chain: &str, from: i64, clear_key: bool) {
    use hooksign::audit::{legacy_entry_hash, HashedFields};
    let mut entries = app.state.store.audit_chain(chain).await.unwrap();
    let mut prev = hooksign::audit::GENESIS_HASH.to_owned();
    for entry in &mut entries {
        if entry.seq == from {
            entry.details = r#"{"forged":true}"#.into();
        }
        entry.prev_hash = prev.clone();
        entry.hash = legacy_entry_hash(&HashedFields::of(entry));
        prev = entry.hash.clone();
        let key = if clear_key { ", key_id = NULL" } else { "" };
        app.execute(&format!(
            "UPDATE audit_events SET details = '{}', prev_hash = '{}', hash = '{}'{key} WHERE id = '{}'",
            entry.details, entry.prev_hash, entry.hash, entry.id
        ))
        .await
        .unwrap();
    }
    app.execute(&format!(
        "UPDATE audit_heads SET hash = '{prev}' WHERE chain = '{chain}'"
    ))
    .await
    .unwrap();
}

async fn audit_verify_finds_an_edit_whose_plain_hashes_were_recomputed(app: TestApp) {
    let (chain, _) = audited_merchant(&app).await;
    let intact = hooksign_cli(&app, &["audit", "verify"]);
    assert!(intact.status.success(), "{}", stderr(&intact));
    // Rewritten and re-hashed with the same algorithm the unkeyed chain used: consistent as
    // a plain chain, but the attacker cannot make the keyed hashes.
    rewrite_with_plain_hashes(&app, &chain, 2, false).await;
    let broken = hooksign_cli(&app, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(stderr(&broken).contains("altered"), "{}", stderr(&broken));
    // Nor does passing the rows off as legacy (unkeyed) entries help.
    rewrite_with_plain_hashes(&app, &chain, 2, true).await;
    let broken = hooksign_cli(&app, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(stderr(&broken).contains("not keyed"), "{}", stderr(&broken));
}

async fn audit_verify_finds_a_deleted_last_entry(app: TestApp) {
    let (chain, _) = audited_merchant(&app).await;
    let entries = app.state.store.audit_chain(&chain).await.unwrap();
    assert_eq!(entries.len(), 3);
    app.execute(&format!(
        "DELETE FROM audit_events WHERE id = '{}'",
        entries[2].id
    ))
    .await
    .unwrap();
    let broken = hooksign_cli(&app, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("entries were deleted"),
        "{}",
        stderr(&broken)
    );
}

async fn audit_head_anchors_find_a_truncation_that_rewound_the_head(app: TestApp) {
    let (chain, token) = audited_merchant(&app).await;
    let head = hooksign_cli(&app, &["audit", "head"]);
    assert!(head.status.success(), "{}", stderr(&head));
    let lines = String::from_utf8(head.stdout).unwrap();
    let anchor = lines
        .lines()
        .find(|line| line.starts_with(&format!("{chain}=")))
        .expect("a head line for the merchant's chain")
        .to_owned();
    let entries = app.state.store.audit_chain(&chain).await.unwrap();
    assert_eq!(anchor, format!("{chain}={}", entries[2].hash));
    let checked = hooksign_cli(&app, &["audit", "verify", "--expect-head", &anchor]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    // The chain grows: an older anchor is still found.
    app.authed(Method::POST, "/v1/signing-secret/initiate", &token)
        .send()
        .await
        .unwrap();
    let grown = hooksign_cli(&app, &["audit", "verify", "--expect-head", &anchor]);
    assert!(grown.status.success(), "{}", stderr(&grown));
    // Truncate the last two entries and rewind the recorded head to match.
    let entries = app.state.store.audit_chain(&chain).await.unwrap();
    assert_eq!(entries.len(), 4);
    app.execute(&format!(
        "DELETE FROM audit_events WHERE chain = '{chain}' AND seq >= 3"
    ))
    .await
    .unwrap();
    app.execute(&format!(
        "UPDATE audit_heads SET seq = 2, hash = '{}' WHERE chain = '{chain}'",
        entries[1].hash
    ))
    .await
    .unwrap();
    let fooled = hooksign_cli(&app, &["audit", "verify"]);
    assert!(
        fooled.status.success(),
        "without an anchor a consistent truncation is not detectable: {}",
        stderr(&fooled)
    );
    let caught = hooksign_cli(&app, &["audit", "verify", "--expect-head", &anchor]);
    assert_eq!(caught.status.code(), Some(1));
    assert!(
        stderr(&caught).contains("expected head"),
        "{}",
        stderr(&caught)
    );
    let bad = hooksign_cli(
        &app,
        &["audit", "verify", "--expect-head", "no-equals-sign"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("CHAIN=HASH"), "{}", stderr(&bad));
}

async fn legacy_unkeyed_chains_are_rechained_once_at_the_upgrade(app: TestApp) {
    let (intact, _) = audited_merchant(&app).await;
    let (broken, _) = audited_merchant(&app).await;
    // What a database from before keyed chains holds: plain SHA-256 chains, no key ids.
    rewrite_with_plain_hashes(&app, &intact, 0, true).await;
    rewrite_with_plain_hashes(&app, &broken, 0, true).await;
    app.execute(&format!(
        "UPDATE audit_events SET target = 'edited' WHERE chain = '{broken}' AND seq = 2"
    ))
    .await
    .unwrap();
    // A restart does not re-chain: only the upgrade does (nothing in the database can ask
    // for it, or an attacker would).
    let (app, _) = app.restart().await;
    let refused =
        hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &intact).await;
    assert!(
        matches!(
            refused,
            Err(hooksign::audit::stored::VerifyError::Chain(
                hooksign::audit::ChainError::NotKeyed { .. }
            ))
        ),
        "{refused:?}"
    );
    // Undo the keyed-chain migration: the database is as an older version left it.
    for sql in [
        "DROP TABLE audit_keys",
        "DROP TABLE audit_heads",
        "ALTER TABLE audit_events DROP COLUMN key_id",
        "DELETE FROM _sqlx_migrations WHERE version = 6",
    ] {
        app.execute(sql).await.unwrap();
    }
    let (app, _) = app.restart().await;
    let rechained = hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &intact)
        .await
        .expect("an intact legacy chain is re-chained under the audit key");
    assert_eq!(rechained.len(), 3);
    let key = app.state.store.audit_key().unwrap();
    assert!(rechained
        .iter()
        .all(|e| e.key_id.as_deref() == Some(key.id())));
    let left = app.state.store.audit_chain(&broken).await.unwrap();
    assert!(left.iter().all(|e| e.key_id.is_none()), "left as it is");
    let verify = hooksign_cli(&app, &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stderr(&verify).contains(&broken), "{}", stderr(&verify));
}

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
            .env(
                "HOOKSIGN_MASTER_KEY",
                &app.config.master_key.as_ref().unwrap().0,
            )
            .current_dir(app.data_dir.parent().unwrap())
            .output_within(crate::helpers::CHILD_DEADLINE)
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

/// Asserts `audit verify` exits 1 reporting `chain` broken with `what`.
fn assert_broken(app: &TestApp, chain: &str, what: &str) {
    let broken = hooksign_cli(app, &["audit", "verify"]);
    let stderr = stderr(&broken);
    assert_eq!(broken.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("audit log BROKEN")
            && stderr.contains(&format!("chain {chain}:"))
            && stderr.contains(what),
        "{stderr}"
    );
}

async fn audit_verify_finds_a_deleted_middle_entry(app: TestApp) {
    let (chain, _) = audited_merchant(&app).await;
    let intact = hooksign_cli(&app, &["audit", "verify"]);
    assert!(intact.status.success(), "{}", stderr(&intact));
    let entries = app.state.store.audit_chain(&chain).await.unwrap();
    assert_eq!(entries.len(), 3);
    app.execute(&format!(
        "DELETE FROM audit_events WHERE id = '{}'",
        entries[1].id
    ))
    .await
    .unwrap();
    assert_broken(&app, &chain, "entry 3");
    assert_broken(&app, &chain, "does not follow the previous entry");
}

async fn audit_verify_finds_reordered_entries(app: TestApp) {
    let (chain, _) = audited_merchant(&app).await;
    let intact = hooksign_cli(&app, &["audit", "verify"]);
    assert!(intact.status.success(), "{}", stderr(&intact));
    let entries = app.state.store.audit_chain(&chain).await.unwrap();
    assert_eq!(entries.len(), 3);
    // Entries 1 and 2 swap places (through a free seq: (chain, seq) is unique).
    for (id, seq) in [
        (&entries[0].id, -1),
        (&entries[1].id, 1),
        (&entries[0].id, 2),
    ] {
        app.execute(&format!(
            "UPDATE audit_events SET seq = {seq} WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    }
    let swapped = app.state.store.audit_chain(&chain).await.unwrap();
    assert_eq!(swapped[0].id, entries[1].id, "the rows were reordered");
    assert_broken(&app, &chain, "does not follow the previous entry");
}

async fn audit_verify_finds_a_tampered_operator_entry(app: TestApp) {
    audited_merchant(&app).await;
    let operator = app.state.store.audit_chain("operator").await.unwrap();
    assert!(
        !operator.is_empty(),
        "the operator key's creation is audited"
    );
    let intact = hooksign_cli(&app, &["audit", "verify"]);
    assert!(intact.status.success(), "{}", stderr(&intact));
    app.execute(
        "UPDATE audit_events SET target = 'someone else' WHERE chain = 'operator' AND seq = 1",
    )
    .await
    .unwrap();
    assert_broken(&app, "operator", "was altered");
}
