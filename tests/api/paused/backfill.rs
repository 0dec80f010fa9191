//! Item 8: a replay with `since` backfills the window's events an endpoint never had.

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{assert_error, Backend, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(backfill_sends_the_window_s_matching_events_an_endpoint_never_had);

/// `POST /v1/endpoints/{id}/replay` with `since` creates a delivery for each event of the
/// window that the endpoint's filter accepts and that it never had, once; `until` bounds the
/// window; a window of more than 10,000 events is refused whole; the audit entry counts it.
async fn backfill_sends_the_window_s_matching_events_an_endpoint_never_had(app: TestApp) {
    let merchant = app.create_merchant("Backfill").await;
    let token = &merchant.test_token;
    let start = app.clock_now();
    let mut events = Vec::new();
    for event_type in ["order.created", "invoice.paid", "order.updated"] {
        let event = send_event(&app, token, event_type, json!({ "type": event_type })).await;
        assert_eq!(event["delivery_count"], 0, "{event}");
        events.push(event["id"].as_str().unwrap().to_owned());
        app.clock.advance(Duration::seconds(60));
    }
    let receiver = Receiver::start().await;
    let ep = endpoint(
        &app,
        token,
        json!({ "url": receiver.url, "event_types": ["order.*"] }),
    )
    .await;
    let ep_id = ep["id"].as_str().unwrap();
    let path = format!("/v1/endpoints/{ep_id}/replay");
    let replay = |body: Value| {
        let (app, path) = (&app, path.clone());
        async move {
            let response = app
                .authed(Method::POST, &path, token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let at = |offset: i64| hooksign::clock::rfc3339(start + Duration::seconds(offset));
    // A window holding only the first event's minute and the second's: one order event.
    let first = replay(json!({ "since": at(-1), "until": at(30) })).await;
    assert_eq!(first["backfilled"], 1, "{first}");
    assert_eq!(first["requeued"], 0, "{first}");
    // The whole history: the other order event; the first already has its delivery.
    let all = replay(json!({ "since": at(-1) })).await;
    assert_eq!(all["backfilled"], 1, "{all}");
    let again = replay(json!({ "since": at(-1) })).await;
    assert_eq!(again["backfilled"], 0, "{again}");
    receiver.wait_for(2).await;
    let mut sent: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    sent.sort();
    let mut expected = vec![events[0].clone(), events[2].clone()];
    expected.sort();
    assert_eq!(
        sent, expected,
        "the order events, once each; not the invoice"
    );
    let deliveries = format!("SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{ep_id}'");
    assert_eq!(app.count(&deliveries).await, 2);
    // Audited with what it did.
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    let audited: Vec<Value> = chain
        .iter()
        .filter(|e| e.action == "endpoint.replay")
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect();
    let backfilled: Vec<&Value> = audited.iter().map(|d| &d["backfilled"]).collect();
    assert_eq!(backfilled, [&json!(1), &json!(1), &json!(0)], "{audited:?}");
    assert_eq!(audited[0]["since"], at(-1), "{audited:?}");

    // 10,001 events in a window: refused, nothing created.
    let now = app.clock_now().timestamp_millis();
    let (numbers, id, body) = match app.backend {
        Backend::Sqlite => (
            "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10001) SELECT i FROM n) AS n",
            "printf('%010d', n.i)",
            "X'7B7D'",
        ),
        Backend::Postgres => (
            "generate_series(1, 10001) AS n(i)",
            "lpad(n.i::text, 10, '0')",
            "decode('7b7d', 'hex')",
        ),
    };
    app.execute(&format!(
        "INSERT INTO events (id, merchant_id, mode, type, body, created_at) SELECT \
         'evt_01JD5Q3Z8X9V0W1Y' || {id}, '{}', 'test', 'order.bulk', {body}, {now} FROM {numbers}",
        merchant.id
    ))
    .await
    .unwrap();
    let response = app
        .authed(Method::POST, &path, token)
        .json(&json!({ "since": at(-1), "status": ["failed"] }))
        .send()
        .await
        .unwrap();
    assert_error(response, 422, "invalid_request", "backfill_too_large").await;
    assert_eq!(app.count(&deliveries).await, 2, "nothing was created");
}
