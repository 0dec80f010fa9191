//! Retention (issue 15): finished deliveries and their attempts go after their window and not
//! before, events once no delivery is left and they are old enough, audit entries with a
//! checkpoint that keeps the chain verifiable (a deleted endpoint's history and `hooksign prune`:
//! `retention_batches.rs`). The pruner is run by hand (`state.pruner.tick()`) on the manual
//! clock.

use std::process::Command;

use chrono::Duration;
use hooksign::config::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{engine_settled, OutputWithin as _, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    configure = super::by_hand;
    finished_deliveries_and_their_attempts_go_after_their_window_and_not_before,
    events_go_once_no_delivery_is_left_and_they_are_old_enough,
    pruned_audit_chains_still_verify_and_tampering_is_still_found,
);

/// Passes only when a test runs one; batches of 2 rows, so every pass takes several; failed
/// deliveries kept 10 days, delivered ones 30, audit entries 30; a failure is final at once
/// (no retries).
pub(crate) fn by_hand(config: &mut Config) {
    config.retention.interval_secs = 3_600;
    config.retention.pause_ms = 0;
    config.retention.batch_rows = 2;
    config.retention.delivered_days = 30.0;
    config.retention.failed_days = 10.0;
    config.retention.audit_days = Some(30.0);
    config.delivery.retry_schedule_secs = vec![];
    // One test posts 2,000 events as fast as it can.
    config.auth.rate_per_sec = 100_000;
    config.auth.burst = 100_000;
}

/// A closed loopback port: every attempt fails at once.
pub(crate) const NOWHERE: &str = "http://127.0.0.1:9/hook";

pub(crate) async fn count(app: &TestApp, sql: &str) -> i64 {
    app.count(sql).await
}

async fn deliveries(app: &TestApp, merchant: &str, status: &str) -> i64 {
    count(
        app,
        &format!("SELECT COUNT(*) FROM deliveries WHERE merchant_id = '{merchant}' AND status = '{status}'"),
    )
    .await
}

async fn attempts(app: &TestApp, merchant: &str) -> i64 {
    count(
        app,
        &format!(
            "SELECT COUNT(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.merchant_id = '{merchant}'"
        ),
    )
    .await
}

async fn events(app: &TestApp, merchant: &str) -> i64 {
    count(
        app,
        &format!("SELECT COUNT(*) FROM events WHERE merchant_id = '{merchant}'"),
    )
    .await
}

/// `hooksign_retention_pruned_rows_total{table}` as `/metrics` shows it (0 when absent).
async fn pruned_metric(app: &TestApp, table: &str) -> f64 {
    let text = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("hooksign_retention_pruned_rows_total{{table=\"{table}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Waits until `merchant` has no pending delivery and nothing is in flight.
pub(crate) async fn settled(app: &TestApp, merchant: &str) {
    crate::helpers::wait_until(
        "every delivery attempted",
        std::time::Duration::from_secs(30),
        || async {
            app.state.delivery.wake();
            (deliveries(app, merchant, "pending").await == 0).then_some(())
        },
    )
    .await;
    engine_settled(app).await;
}

async fn finished_deliveries_and_their_attempts_go_after_their_window_and_not_before(app: TestApp) {
    let a = app.create_merchant("Retained").await;
    let b = app.create_merchant("Other").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &a.test_token, json!({ "url": receiver.url })).await;
    endpoint(&app, &a.test_token, json!({ "url": NOWHERE })).await;
    endpoint(&app, &b.test_token, json!({ "url": receiver.url })).await;
    for n in 0..3 {
        send_event(&app, &a.test_token, "order.paid", json!({ "n": n })).await;
    }
    settled(&app, &a.id).await;
    assert_eq!(deliveries(&app, &a.id, "delivered").await, 3);
    assert_eq!(deliveries(&app, &a.id, "failed").await, 3);
    assert_eq!(attempts(&app, &a.id).await, 6);
    let metrics_before = pruned_metric(&app, "deliveries").await;

    // Day 9: nothing is old enough.
    app.clock.advance(Duration::days(9));
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!(pruned.total(), 0, "{pruned:?}");
    assert_eq!(deliveries(&app, &a.id, "failed").await, 3);
    // The other merchant's history starts now, eleven days later than the first's.
    send_event(&app, &b.test_token, "order.paid", json!({})).await;
    settled(&app, &b.id).await;

    // Day 11: the failed ones (10 days after their last attempt) go, with their attempts.
    app.clock.advance(Duration::days(2));
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!(
        (pruned.deliveries, pruned.delivery_attempts),
        (3, 3),
        "{pruned:?}"
    );
    assert_eq!(deliveries(&app, &a.id, "failed").await, 0);
    assert_eq!(deliveries(&app, &a.id, "delivered").await, 3);
    assert_eq!(attempts(&app, &a.id).await, 3);
    // Each event still has its delivered delivery.
    assert_eq!(events(&app, &a.id).await, 3);

    // Day 29: delivered ones stay for 30 days.
    app.clock.advance(Duration::days(18));
    assert_eq!(app.state.pruner.tick().await.unwrap().total(), 0);
    assert_eq!(deliveries(&app, &a.id, "delivered").await, 3);

    // Day 31: the first merchant's delivered deliveries, attempts and now empty events go; the
    // other merchant's, delivered on day 9, stay.
    app.clock.advance(Duration::days(2));
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!(
        (pruned.deliveries, pruned.delivery_attempts, pruned.events),
        (3, 3, 3),
        "{pruned:?}"
    );
    assert_eq!(deliveries(&app, &a.id, "delivered").await, 0);
    assert_eq!(attempts(&app, &a.id).await, 0);
    assert_eq!(events(&app, &a.id).await, 0);
    assert_eq!(deliveries(&app, &b.id, "delivered").await, 1);
    assert_eq!(attempts(&app, &b.id).await, 1);
    assert_eq!(events(&app, &b.id).await, 1);

    // Day 40: the other merchant's go by the same rule.
    app.clock.advance(Duration::days(9));
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!((pruned.deliveries, pruned.events), (1, 1), "{pruned:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM deliveries").await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM delivery_attempts").await,
        0
    );

    // Every pass was counted (other tests may add to the same process-wide counter).
    let metrics_after = pruned_metric(&app, "deliveries").await;
    assert!(
        metrics_after - metrics_before >= 7.0,
        "{metrics_before} → {metrics_after}"
    );
    assert!(pruned_metric(&app, "delivery_attempts").await >= 7.0);
    assert!(pruned_metric(&app, "events").await >= 4.0);
}

async fn events_go_once_no_delivery_is_left_and_they_are_old_enough(app: TestApp) {
    let merchant = app.create_merchant("Events").await;
    // No endpoint yet: this event never has a delivery; it stays for the window anyway
    // (a new endpoint could be backfilled from it).
    let lonely = send_event(&app, &merchant.test_token, "order.paid", json!({})).await;
    endpoint(&app, &merchant.test_token, json!({ "url": NOWHERE })).await;
    let failed = send_event(&app, &merchant.test_token, "order.paid", json!({})).await;
    settled(&app, &merchant.id).await;
    assert_eq!(deliveries(&app, &merchant.id, "failed").await, 1);
    let event_row = |event: &Value| {
        format!(
            "SELECT COUNT(*) FROM events WHERE id = '{}'",
            event["id"].as_str().unwrap()
        )
    };

    // Day 11: the failed delivery went; its event, now without deliveries, stays: 30 days.
    app.clock.advance(Duration::days(11));
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!((pruned.deliveries, pruned.events), (1, 0), "{pruned:?}");
    assert_eq!(count(&app, &event_row(&lonely)).await, 1);
    assert_eq!(count(&app, &event_row(&failed)).await, 1);
    let shown = app
        .authed(
            Method::GET,
            &format!("/v1/events/{}", failed["id"].as_str().unwrap()),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    assert_eq!(
        shown.json::<Value>().await.unwrap()["deliveries"],
        json!([])
    );

    // Day 31: both go.
    app.clock.advance(Duration::days(20));
    let pruned = app.state.pruner.tick().await.unwrap();
    assert_eq!(pruned.events, 2, "{pruned:?}");
    assert_eq!(events(&app, &merchant.id).await, 0);
}

/// Runs `hooksign ARGS` on the app's database with its master key.
pub(crate) fn hooksign_cli(
    app: &TestApp,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksign"));
    command
        .args(args)
        .env("HOOKSIGN_DATABASE__URL", &app.config.database.url)
        .env(
            "HOOKSIGN_MASTER_KEY",
            &app.config.master_key.as_ref().expect("tests set one").0,
        )
        .env_remove("HOOKSIGN_RETENTION__DELIVERED_DAYS")
        .env_remove("HOOKSIGN_RETENTION__FAILED_DAYS")
        .env_remove("HOOKSIGN_RETENTION__AUDIT_DAYS")
        .current_dir(app.data_dir.parent().unwrap());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output_within(crate::helpers::CHILD_DEADLINE)
}

async fn verified(app: &TestApp, chain: &str) -> usize {
    hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), chain)
        .await
        .unwrap_or_else(|err| panic!("chain {chain}: {err}"))
        .len()
}

async fn pruned_audit_chains_still_verify_and_tampering_is_still_found(app: TestApp) {
    let merchant = app.create_merchant("Audited").await;
    let chain = merchant.id.clone();
    for n in 0..5 {
        endpoint(
            &app,
            &merchant.test_token,
            json!({ "url": format!("{NOWHERE}{n}") }),
        )
        .await;
    }
    let old = count(
        &app,
        &format!("SELECT COUNT(*) FROM audit_events WHERE chain = '{chain}'"),
    )
    .await;
    assert!(old >= 6, "{old}");
    let operator_old = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE chain = 'operator'",
    )
    .await;

    // Day 31: everything so far is old enough; what is written now is not.
    app.clock.advance(Duration::days(31));
    endpoint(&app, &merchant.test_token, json!({ "url": NOWHERE })).await;
    endpoint(&app, &merchant.test_token, json!({ "url": NOWHERE })).await;
    let pruned = app.state.pruner.tick().await.unwrap();
    assert!(
        pruned.audit_events >= (old + operator_old) as u64,
        "{pruned:?}"
    );
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM audit_events WHERE chain = '{chain}'")
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) FROM audit_checkpoints WHERE chain = '{chain}' AND seq = {old}"
            )
        )
        .await,
        1
    );
    assert_eq!(verified(&app, &chain).await, 2);
    assert_eq!(verified(&app, "operator").await, 0);
    let intact = hooksign_cli(&app, &["audit", "verify"], &[]);
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );
    // A head anchored before the prune that became the checkpoint still checks out.
    let head = hooksign_cli(&app, &["audit", "head"], &[]);
    assert!(head.status.success());

    // Editing a kept entry is still found.
    let first_kept = format!("(SELECT MIN(seq) FROM audit_events WHERE chain = '{chain}')");
    app.execute(&format!(
        "UPDATE audit_events SET target = 'ep_forged' WHERE chain = '{chain}' AND seq = {first_kept}"
    ))
    .await
    .unwrap();
    let err = hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &chain)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was altered"), "{err}");
    let broken = hooksign_cli(&app, &["audit", "verify"], &[]);
    assert!(!broken.status.success());
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("audit log BROKEN"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );

    // Deleting it instead (and moving the checkpoint over it, without the key) is found too.
    app.execute(&format!(
        "DELETE FROM audit_events WHERE chain = '{chain}' AND seq = {first_kept}"
    ))
    .await
    .unwrap();
    let err = hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &chain)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not follow"), "{err}");
    app.execute(&format!(
        "UPDATE audit_checkpoints SET seq = seq + 1 WHERE chain = '{chain}'"
    ))
    .await
    .unwrap();
    let err = hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &chain)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("checkpoint"), "{err}");
}
