//! Background tasks: one bad row never stops the rotation scheduler's work for everyone else.

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::on_both_stores;

on_both_stores!(a_corrupt_merchant_does_not_stop_the_scheduler_for_the_others);

async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Value) -> Value {
    let response = app
        .authed(method, path, token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// Issue 12, item 21: a merchant whose secret rows are damaged made every tick fail before it
/// reached the other merchants' due work.
async fn a_corrupt_merchant_does_not_stop_the_scheduler_for_the_others(app: TestApp) {
    let broken = app.create_merchant("Broken").await;
    let good = app.create_merchant("Good").await;
    // The broken merchant has a completion due first in the tick, and no active secret left.
    let complete_at = hooksign::clock::rfc3339(app.clock_now() + Duration::minutes(5));
    call(
        &app,
        &broken.live_token,
        Method::POST,
        "/v1/signing-secret/initiate",
        json!({ "complete_at": complete_at }),
    )
    .await;
    app.execute(&format!(
        "DELETE FROM signing_secrets WHERE merchant_id = '{}' AND mode = 'live' AND state = 'active'",
        broken.id
    ))
    .await
    .unwrap();
    // The good merchant has a cron policy due in the same tick.
    let schedule = call(
        &app,
        &good.live_token,
        Method::PUT,
        "/v1/signing-secret/schedule",
        json!({ "cron": "0 * * * * *", "grace": 600 }),
    )
    .await;
    let next: chrono::DateTime<chrono::Utc> = schedule["schedule"]["next_fire_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.clock
        .advance(Duration::minutes(5).max(next - app.clock_now()));

    let report = app.state.scheduler.tick().await;
    assert_eq!(report.initiated, 1, "{report:?}");
    assert_eq!(report.failed, 1, "{report:?}");
    let pending = app
        .count(&format!(
            "SELECT COUNT(*) FROM signing_secrets WHERE merchant_id = '{}' AND mode = 'live' AND state = 'pending'",
            good.id
        ))
        .await;
    assert_eq!(pending, 1, "the good merchant's rotation was initiated");
    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("hooksign_scheduler_errors_total")),
        "{metrics}"
    );
}
