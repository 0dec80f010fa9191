//! Issue 15, items 6–8: a queue that only holds sendable work. Deliveries of a disabled
//! endpoint or merchant are `paused` (out of the due index the claim reads) and come back when
//! it is enabled again (here); old unsent ones `expire` (`expiry.rs`); a replay with `since`
//! backfills the events an endpoint never had (`backfill.rs`); migration 0009 keeps every row
//! (`migration.rs`).

mod backfill;
mod expiry;
mod migration;

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, first_delivery, send_event};
use crate::helpers::{enable_endpoint, get_ok, wait_until, Backend, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    disabling_an_endpoint_pauses_its_queue_and_re_enabling_delivers_it,
    disabling_a_merchant_pauses_every_endpoint_until_it_is_enabled_again,
    the_claim_never_reads_100_000_paused_deliveries,
);

/// `PATCH` of an endpoint or merchant, asserted 200.
pub(crate) async fn patch(app: &TestApp, request: reqwest::RequestBuilder, body: Value) -> Value {
    let _ = app;
    let response = request.json(&body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The deliveries of one status, as listed.
pub(crate) async fn listed(app: &TestApp, token: &str, status: &str) -> Vec<Value> {
    let list = get_ok(
        app,
        token,
        &format!("/v1/deliveries?status={status}&limit=100"),
    )
    .await;
    list["data"].as_array().unwrap().clone()
}

/// Waits until delivery `id` shows `status`.
pub(crate) async fn wait_for_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    wait_until(
        &format!("delivery {id} to become {status}"),
        StdDuration::from_secs(30),
        || async {
            let shown = get_ok(app, token, &format!("/v1/deliveries/{id}")).await;
            (shown["status"] == status).then_some(shown)
        },
    )
    .await
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// Two deliveries in flight (held at the receiver) and one queued behind the endpoint's cap
/// when it is disabled: all three are paused; the attempts under way are still recorded (one
/// delivered, one to retry, which stays paused), nothing is claimed while disabled, and
/// re-enabling sends the rest, the retry at its own later time.
async fn disabling_an_endpoint_pauses_its_queue_and_re_enabling_delivers_it(app: TestApp) {
    let merchant = app.create_merchant("Paused endpoint").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    receiver.script(&[500]);
    receiver.hold();
    let ep = endpoint(
        &app,
        token,
        json!({ "url": receiver.url, "max_in_flight": 2 }),
    )
    .await;
    let id = ep["id"].as_str().unwrap();
    let mut deliveries = Vec::new();
    for n in 0..3 {
        let event = send_event(&app, token, "order.created", json!({ "n": n })).await;
        deliveries.push(first_delivery(&app, token, &event).await);
    }
    wait_until(
        "two attempts held at the receiver",
        StdDuration::from_secs(15),
        || async { (receiver.in_flight() == 2).then_some(()) },
    )
    .await;
    let path = format!("/v1/endpoints/{id}");
    let disabled = patch(
        &app,
        app.authed(Method::PATCH, &path, token),
        json!({ "enabled": false }),
    )
    .await;
    assert_eq!(disabled["enabled"], false, "{disabled}");
    // Every unsent delivery is paused by the same request, the two in flight included.
    let paused = listed(&app, token, "paused").await;
    assert_eq!(paused.len(), 3, "{paused:?}");
    assert!(listed(&app, token, "pending").await.is_empty());
    // The attempts under way end: one answered 500, one 200. Both outcomes are recorded; the
    // retry stays paused (not back in the queue of a disabled endpoint), the other delivered.
    receiver.release();
    wait_until("both held attempts recorded", StdDuration::from_secs(15), || async {
        let attempted = app
            .count(&format!(
                "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{id}' AND attempts = 1 AND leased_by IS NULL"
            ))
            .await;
        (attempted == 2).then_some(())
    })
    .await;
    let mut retried = None;
    let mut queued = None;
    for delivery in &deliveries {
        let shown = get_ok(&app, token, &format!("/v1/deliveries/{delivery}")).await;
        match (
            shown["status"].as_str().unwrap(),
            shown["attempts"].as_u64().unwrap(),
        ) {
            ("delivered", 1) => {}
            ("paused", 1) => retried = Some(shown),
            ("paused", 0) => queued = Some(shown),
            other => panic!("unexpected {other:?}: {shown}"),
        }
    }
    let (retried, queued) = (
        retried.expect("the 500 is paused"),
        queued.expect("one queued"),
    );
    assert_eq!(retried["last_status"], 500, "{retried}");
    // Nothing is claimed while disabled.
    let started = app.state.delivery.dispatch_batch().await.unwrap();
    assert_eq!(started, 0, "a claim started a disabled endpoint's delivery");
    assert_eq!(receiver.received().len(), 2);

    let enabled_at = app.clock_now();
    enable_endpoint(&app, token, id).await;
    assert!(listed(&app, token, "paused").await.is_empty());
    let retry = get_ok(
        &app,
        token,
        &format!("/v1/deliveries/{}", retried["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(retry["status"], "pending", "{retry}");
    // Due at its own retry time, which is later than the re-enable.
    assert_eq!(
        retry["next_attempt_at"], retried["next_attempt_at"],
        "{retry}"
    );
    assert!(time(&retry["next_attempt_at"]) > enabled_at, "{retry}");
    let queued_id = queued["id"].as_str().unwrap();
    let done = wait_for_status(&app, token, queued_id, "delivered").await;
    assert_eq!(done["attempts"], 1, "{done}");
    app.clock.advance(Duration::seconds(10));
    app.state.delivery.wake();
    let done = wait_for_status(&app, token, retried["id"].as_str().unwrap(), "delivered").await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(receiver.received().len(), 4);
}

/// A merchant disabled by the operator pauses the queue of every endpoint it has; enabled
/// again, the queue is delivered.
async fn disabling_a_merchant_pauses_every_endpoint_until_it_is_enabled_again(app: TestApp) {
    let merchant = app.create_merchant("Paused merchant").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    receiver.hold();
    let ep = endpoint(
        &app,
        token,
        json!({ "url": receiver.url, "max_in_flight": 1 }),
    )
    .await;
    let mut deliveries = Vec::new();
    for n in 0..3 {
        let event = send_event(&app, token, "order.created", json!({ "n": n })).await;
        deliveries.push(first_delivery(&app, token, &event).await);
    }
    wait_until(
        "an attempt held at the receiver",
        StdDuration::from_secs(15),
        || async { (receiver.in_flight() == 1).then_some(()) },
    )
    .await;
    let path = format!("/v1/merchants/{}", merchant.id);
    patch(
        &app,
        app.operator(Method::PATCH, &path),
        json!({ "disabled": true }),
    )
    .await;
    let ep_id = ep["id"].as_str().unwrap();
    let paused = format!(
        "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{ep_id}' AND status = 'paused'"
    );
    assert_eq!(
        app.count(&paused).await,
        3,
        "all three paused, the one in flight too"
    );
    receiver.release();
    wait_until("the held attempt recorded", StdDuration::from_secs(15), || async {
        let delivered = app
            .count(&format!("SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{ep_id}' AND status = 'delivered'"))
            .await;
        (delivered == 1).then_some(())
    })
    .await;
    assert_eq!(app.count(&paused).await, 2);
    assert_eq!(app.state.delivery.dispatch_batch().await.unwrap(), 0);
    patch(
        &app,
        app.operator(Method::PATCH, &path),
        json!({ "disabled": false }),
    )
    .await;
    for delivery in &deliveries {
        wait_for_status(&app, token, delivery, "delivered").await;
    }
    assert_eq!(receiver.received().len(), 3);
}

/// Runs the plan of `sql` (the claim's own text) with its four parameters; the plan's lines.
async fn claim_plan(app: &TestApp, sql: &str) -> Vec<String> {
    let now = app.clock_now().timestamp_millis();
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.config.database.url)
                .await
                .unwrap();
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .bind(now + 60_000)
                .bind("explain/1")
                .bind(now)
                .bind(64_i64)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows.iter()
                .map(|row| sqlx::Row::get::<String, _>(row, 3))
                .collect()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.config.database.url)
                .await
                .unwrap();
            // The statistics autovacuum would gather, so the plan is the one a busy database
            // runs with.
            sqlx::query("ANALYZE deliveries")
                .execute(&pool)
                .await
                .unwrap();
            let rows = sqlx::query(&format!("EXPLAIN {sql}"))
                .bind(now + 60_000)
                .bind("explain/1")
                .bind(now)
                .bind(64_i64)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows.iter()
                .map(|row| sqlx::Row::get::<String, _>(row, 0))
                .collect()
        }
    }
}

/// 100,000 deliveries of an endpoint are paused when it is disabled (in batches, each its own
/// short transaction) and resumed when it is enabled again; while paused, the claim's plan
/// reads the partial due index, which holds none of them.
async fn the_claim_never_reads_100_000_paused_deliveries(app: TestApp) {
    const ROWS: i64 = 100_000;
    let merchant = app.create_merchant("Many paused").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    let ep = endpoint(&app, token, json!({ "url": receiver.url })).await;
    let ep_id = ep["id"].as_str().unwrap();
    let event = send_event(&app, token, "order.created", json!({})).await;
    let event_id = event["id"].as_str().unwrap();
    receiver.wait_for(1).await;
    // Queued for tomorrow, so nothing is sent while the endpoint is enabled.
    let now = app.clock_now().timestamp_millis();
    let later = now + 86_400_000;
    let (numbers, id) = match app.backend {
        Backend::Sqlite => (
            "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n) AS n",
            "printf('%010d', n.i)",
        ),
        Backend::Postgres => ("generate_series(1, 100000) AS n(i)", "lpad(n.i::text, 10, '0')"),
    };
    app.execute(&format!(
        "INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, \
         next_attempt_at, created_at, updated_at) SELECT 'dlv_01JD5Q3Z8X9V0W1Y' || {id}, '{event_id}', \
         '{ep_id}', '{}', 'test', 'pending', 0, {later}, {now}, {now} FROM {numbers}",
        merchant.id
    ))
    .await
    .unwrap();
    let count = |status: &str| {
        format!(
            "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{ep_id}' AND status = '{status}'"
        )
    };
    assert_eq!(app.count(&count("pending")).await, ROWS);

    if app.backend == Backend::Postgres {
        // What autovacuum does after a bulk insert: the planner knows the table's size.
        app.execute("ANALYZE deliveries").await.unwrap();
    }
    let path = format!("/v1/endpoints/{ep_id}");
    let started = Instant::now();
    patch(
        &app,
        app.authed(Method::PATCH, &path, token),
        json!({ "enabled": false }),
    )
    .await;
    let pause_took = started.elapsed();
    assert_eq!(app.count(&count("paused")).await, ROWS);
    assert_eq!(app.count(&count("pending")).await, 0);

    // The claim's own statement, planned with the paused rows in place.
    let sql = app.state.store.claim_statement(0);
    let plan = claim_plan(&app, &sql).await;
    let text = plan.join("\n");
    match app.backend {
        Backend::Sqlite => {
            // The candidates come from the partial due index (its condition excludes paused
            // rows); the table is only looked up by primary key.
            assert!(
                plan.iter().any(
                    |line| line.contains(" d USING COVERING INDEX deliveries_due")
                        || line.contains(" d USING INDEX deliveries_due")
                ),
                "{text}"
            );
            assert!(
                !plan.iter().any(|line| line.starts_with("SCAN d")
                    && !line.contains("deliveries_due")
                    || line.starts_with("SCAN deliveries")),
                "a full scan of deliveries: {text}"
            );
        }
        Backend::Postgres => {
            assert!(
                text.contains("using deliveries_due on deliveries d"),
                "{text}"
            );
            assert!(!text.contains("Seq Scan on deliveries"), "{text}");
        }
    }
    // What the index holds: not one of the 100,000.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .await,
        0
    );

    let started = Instant::now();
    enable_endpoint(&app, token, ep_id).await;
    let resume_took = started.elapsed();
    assert_eq!(app.count(&count("pending")).await, ROWS);
    assert_eq!(app.count(&count("paused")).await, 0);
    // Each keeps its own (later) due time.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE endpoint_id = '{ep_id}' AND status = 'pending' AND next_attempt_at = {later}"
        ))
        .await,
        ROWS
    );
    eprintln!(
        "{:?}: pausing {ROWS} deliveries took {pause_took:?}, resuming them {resume_took:?} ({} transactions each)",
        app.backend,
        (ROWS + i64::from(hooksign::store::SETTLE_BATCH) - 1) / i64::from(hooksign::store::SETTLE_BATCH),
    );
}
