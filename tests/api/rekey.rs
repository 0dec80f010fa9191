//! Changing the master key: `hooksign rekey` re-encrypts every signing secret on either store
//! and keeps each secret what it was (same fingerprints, same values, same signatures), and a
//! daemon given the new key as `master_key` and the old one as `master_key_previous` keeps
//! reading what the old key sealed, before, during and after a rekey it runs beside.

use std::process::Command;

use hooksign::config::Redacted;
use hooksign::secrets::MasterKey;
use hooksign::verify::{bolt_signature, Verifier};
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{get_ok, OutputWithin as _, TestApp, TestMerchant, CHILD_DEADLINE};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    rekey_keeps_every_secret_and_a_daemon_on_the_new_key_signs_and_delivers_with_them,
    a_daemon_given_the_previous_master_key_reads_what_it_sealed_through_a_rekey,
);

/// One secret as the API shows it: where it sits, its fingerprint (status) and value (reveal).
#[derive(PartialEq)]
struct Shown {
    slot: String,
    fingerprint: String,
    secret: String,
}

/// Never the value: the fingerprint of the value revealed, beside the one the status shows.
impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let revealed = hooksign::secrets::SigningSecret::parse(&self.secret)
            .map_or_else(|| "not a secret".to_owned(), |secret| secret.fingerprint());
        f.debug_struct("Shown")
            .field("slot", &self.slot)
            .field("fingerprint", &self.fingerprint)
            .field("revealed_value_fingerprint", &revealed)
            .finish()
    }
}

/// The live active secret and the test active and pending ones (a test rotation is begun).
async fn secrets(app: &TestApp, merchant: &TestMerchant) -> Vec<Shown> {
    let mut shown = Vec::new();
    for (mode, token, slots) in [
        ("live", &merchant.live_token, &["active"][..]),
        ("test", &merchant.test_token, &["active", "pending"]),
    ] {
        let status = get_ok(app, token, "/v1/signing-secret").await;
        let revealed = app
            .authed(Method::POST, "/v1/signing-secret/reveal", token)
            .send()
            .await
            .unwrap();
        assert_eq!(revealed.status(), 200, "{mode} reveal");
        let revealed: Value = revealed.json().await.unwrap();
        for slot in slots {
            assert_eq!(
                status[slot]["id"], revealed[slot]["id"],
                "{mode} {slot}: {status} {revealed}"
            );
            shown.push(Shown {
                slot: format!("{mode} {slot}"),
                fingerprint: status[slot]["fingerprint"].as_str().unwrap().to_owned(),
                secret: revealed[slot]["secret"].as_str().unwrap().to_owned(),
            });
        }
    }
    shown
}

/// A merchant with a test rotation begun and a test endpoint on `receiver`.
async fn merchant_with_secrets(app: &TestApp, receiver: &Receiver) -> TestMerchant {
    let merchant = app.create_merchant("Rekeyed secrets").await;
    let initiated = app
        .authed(
            Method::POST,
            "/v1/signing-secret/initiate",
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(initiated.status(), 200);
    endpoint(app, &merchant.test_token, json!({ "url": receiver.url })).await;
    merchant
}

/// The signing oracle and a delivery both sign with exactly the secrets `shown`.
async fn signs_and_delivers_with(
    app: &TestApp,
    merchant: &TestMerchant,
    receiver: &Receiver,
    shown: &[Shown],
) {
    let (active, pending) = (&shown[1].secret, &shown[2].secret);
    let body = br#"{"type":"order.created"}"#.to_vec();
    let signed = app
        .authed(Method::POST, "/v1/sign?scheme=bolt", &merchant.test_token)
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let signed: Value = signed.json().await.unwrap();
    let headers: Vec<(String, String)> = signed["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
        .collect();
    for secret in [active, pending] {
        Verifier::new([secret])
            .unwrap()
            .verify_bolt(headers.as_slice(), &body)
            .expect("the oracle signs with the secret shown");
    }

    let before = receiver.received().len();
    send_event(app, &merchant.test_token, "order.created", json!({})).await;
    let got = receiver.wait_for(before + 1).await;
    let delivery = &got[before];
    assert_eq!(
        delivery.header("x-bolt-hmac-sha256"),
        Some(bolt_signature(active.as_bytes(), &delivery.body).as_str())
    );
    assert_eq!(
        delivery.header("x-bolt-hmac-sha256-pending"),
        Some(bolt_signature(pending.as_bytes(), &delivery.body).as_str())
    );
}

async fn sealed_with(app: &TestApp, key: &MasterKey) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM signing_secrets WHERE key_id = '{}'",
        key.id()
    ))
    .await
}

/// Runs `hooksign rekey` to `target` on the app's database with `master_key` (and
/// `previous`); asserts it succeeded and answers what it printed.
fn rekey(
    app: &TestApp,
    master_key: &MasterKey,
    previous: Option<&MasterKey>,
    target: &MasterKey,
) -> String {
    rekeyed(rekey_command(app, master_key, previous, target).output_within(CHILD_DEADLINE))
}

/// The `hooksign rekey` command of [`rekey`], not yet run.
fn rekey_command(
    app: &TestApp,
    master_key: &MasterKey,
    previous: Option<&MasterKey>,
    target: &MasterKey,
) -> Command {
    let key_file = app.data_dir.join(format!("{}.key", target.id()));
    std::fs::write(&key_file, target.to_base64()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksign"));
    command
        .args(["rekey", "--new-key-file", key_file.to_str().unwrap()])
        .env("HOOKSIGN_DATABASE__URL", &app.config.database.url)
        .env("HOOKSIGN_MASTER_KEY", master_key.to_base64())
        .env_remove("HOOKSIGN_MASTER_KEY_PREVIOUS")
        .current_dir(app.data_dir.parent().unwrap());
    if let Some(previous) = previous {
        command.env("HOOKSIGN_MASTER_KEY_PREVIOUS", previous.to_base64());
    }
    command
}

/// What a successful rekey printed.
fn rekeyed(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "rekey exited {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn configured_key(app: &TestApp) -> MasterKey {
    MasterKey::from_base64(&app.config.master_key.as_ref().unwrap().0).unwrap()
}

async fn rekey_keeps_every_secret_and_a_daemon_on_the_new_key_signs_and_delivers_with_them(
    mut app: TestApp,
) {
    let receiver = Receiver::start().await;
    let merchant = merchant_with_secrets(&app, &receiver).await;
    let before = secrets(&app, &merchant).await;
    let (old, new) = (configured_key(&app), MasterKey::generate());
    let sealed = sealed_with(&app, &old).await;
    assert!(sealed >= 3, "{sealed}");
    app.stop().await;

    let first = rekey(&app, &old, None, &new);
    assert!(
        first.contains(&format!("re-encrypted {sealed} signing secrets")),
        "{first}"
    );
    // Run again (as after an interruption): it succeeds and finds nothing left to do.
    let second = rekey(&app, &old, None, &new);
    assert!(
        second.contains("re-encrypted 0 signing secrets")
            && second.contains("re-encrypted 0 audit keys"),
        "{second}"
    );
    assert_eq!(sealed_with(&app, &old).await, 0);
    assert_eq!(sealed_with(&app, &new).await, sealed);

    // A daemon on the new key alone: the old one can go.
    app.config.master_key = Some(Redacted(new.to_base64()));
    app.config.master_key_previous = None;
    let (app, _) = app.restart().await;
    let after = secrets(&app, &merchant).await;
    assert_eq!(after, before, "the same secrets, the same fingerprints");
    signs_and_delivers_with(&app, &merchant, &receiver, &after).await;
}

async fn a_daemon_given_the_previous_master_key_reads_what_it_sealed_through_a_rekey(
    mut app: TestApp,
) {
    let receiver = Receiver::start().await;
    let merchant = merchant_with_secrets(&app, &receiver).await;
    let before = secrets(&app, &merchant).await;
    let (old, new) = (configured_key(&app), MasterKey::generate());
    let sealed = sealed_with(&app, &old).await;

    // The first step of a key change: every daemon restarts with the new key as master_key
    // and the old one as master_key_previous. Nothing is re-encrypted yet.
    app.config.master_key = Some(Redacted(new.to_base64()));
    app.config.master_key_previous = Some(Redacted(old.to_base64()));
    let (mut app, _) = app.restart().await;
    assert_eq!(sealed_with(&app, &old).await, sealed);
    assert_eq!(secrets(&app, &merchant).await, before);
    signs_and_delivers_with(&app, &merchant, &receiver, &before).await;
    // What it seals from now on, it seals with the new key.
    let initiated = app
        .authed(
            Method::POST,
            "/v1/signing-secret/initiate",
            &merchant.live_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(initiated.status(), 200);
    assert_eq!(sealed_with(&app, &new).await, 1);

    // The rekey runs beside it, with the same two keys; the daemon reads every secret, and
    // reads the same, again and again until the rekey has ended.
    let mut command = rekey_command(&app, &new, Some(&old), &new);
    let running = tokio::task::spawn_blocking(move || command.output_within(CHILD_DEADLINE));
    while !running.is_finished() {
        assert_eq!(
            secrets(&app, &merchant).await,
            before,
            "read during the rekey"
        );
    }
    let out = rekeyed(running.await.unwrap());
    assert!(
        out.contains(&format!("re-encrypted {sealed} signing secrets")),
        "{out}"
    );
    assert_eq!(sealed_with(&app, &old).await, 0);
    assert_eq!(secrets(&app, &merchant).await, before);
    signs_and_delivers_with(&app, &merchant, &receiver, &before).await;

    // And once every row is under the new key, the previous one can be dropped.
    app.stop().await;
    app.config.master_key_previous = None;
    let (app, _) = app.restart().await;
    assert_eq!(secrets(&app, &merchant).await, before);
    signs_and_delivers_with(&app, &merchant, &receiver, &before).await;
}
