//! Issue 15, items 6–8: a queue that only holds sendable work. Deliveries of a disabled
//! endpoint or merchant are `paused` (out of the due index the claim reads) and come back when
//! it is enabled again; old unsent ones `expire`; a replay with `since` backfills the events an
//! endpoint never had.

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, first_delivery, send_event};
use crate::helpers::{assert_error, enable_endpoint, get_ok, wait_until, Backend, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    disabling_an_endpoint_pauses_its_queue_and_re_enabling_delivers_it,
    disabling_a_merchant_pauses_every_endpoint_until_it_is_enabled_again,
    the_claim_never_reads_100_000_paused_deliveries,
    backfill_sends_the_window_s_matching_events_an_endpoint_never_had,
);
on_both_stores!(
    configure = |config| {
        config.delivery.max_age_secs = 1_200;
        config.delivery.sweep_interval_secs = 1;
    };
    unsent_deliveries_expire_with_the_reason_and_can_be_sent_again,
);

/// `PATCH` of an endpoint or merchant, asserted 200.
async fn patch(app: &TestApp, request: reqwest::RequestBuilder, body: Value) -> Value {
    let _ = app;
    let response = request.json(&body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The deliveries of one status, as listed.
async fn listed(app: &TestApp, token: &str, status: &str) -> Vec<Value> {
    let list = get_ok(
        app,
        token,
        &format!("/v1/deliveries?status={status}&limit=100"),
    )
    .await;
    list["data"].as_array().unwrap().clone()
}

/// Waits until delivery `id` shows `status`.
async fn wait_for_status(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
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

/// After `delivery.max_age_secs` a delivery still failing (pending) and one waiting for its
/// disabled endpoint (paused) are `expired` by the sweep, with the reason; both can be sent
/// again, by retry and by replay, like dead letters.
async fn unsent_deliveries_expire_with_the_reason_and_can_be_sent_again(app: TestApp) {
    let merchant = app.create_merchant("Expiring").await;
    let token = &merchant.test_token;
    // A: answers 503 and asks to be retried in 3000 s, past the 1200 s max age.
    let failing = Receiver::start().await;
    failing.script_with_headers(503, &[("Retry-After", "3000")]);
    let a = endpoint(
        &app,
        token,
        json!({ "url": failing.url, "event_types": ["order.*"] }),
    )
    .await;
    // B: disabled; a backfill gives it a (paused) delivery.
    let waiting = Receiver::start().await;
    let b = endpoint(
        &app,
        token,
        json!({ "url": waiting.url, "event_types": ["invoice.*"], "enabled": false }),
    )
    .await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let since = hooksign::clock::rfc3339(app.clock_now() - Duration::seconds(1));
    let order = send_event(&app, token, "order.created", json!({})).await;
    let invoice = send_event(&app, token, "invoice.paid", json!({})).await;
    assert_eq!(invoice["delivery_count"], 0, "{invoice}");
    let a_delivery = first_delivery(&app, token, &order).await;
    let replayed = app
        .authed(Method::POST, &format!("/v1/endpoints/{b_id}/replay"), token)
        .json(&json!({ "since": since }))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(replayed["backfilled"], 1, "{replayed}");
    let paused = listed(&app, token, "paused").await;
    assert_eq!(paused.len(), 1, "{paused:?}");
    let b_delivery = paused[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(paused[0]["endpoint_id"], b_id);
    let first = wait_until("A's first attempt", StdDuration::from_secs(15), || async {
        let shown = get_ok(&app, token, &format!("/v1/deliveries/{a_delivery}")).await;
        (shown["attempts"] == 1).then_some(shown)
    })
    .await;
    assert_eq!(first["status"], "pending", "{first}");

    // Nothing expires before its time.
    app.clock.advance(Duration::seconds(1_100));
    tokio::time::sleep(StdDuration::from_millis(2_500)).await;
    assert!(listed(&app, token, "expired").await.is_empty());
    app.clock.advance(Duration::seconds(101));
    let expired_a = wait_for_status(&app, token, &a_delivery, "expired").await;
    let expired_b = wait_for_status(&app, token, &b_delivery, "expired").await;
    assert_eq!(
        expired_a["last_error"],
        "expired after 20 minutes still failing (last error: server_error)",
        "{expired_a}"
    );
    assert_eq!(
        expired_b["last_error"], "expired after 20 minutes while its endpoint was disabled",
        "{expired_b}"
    );
    let mut expired: Vec<String> = listed(&app, token, "expired")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    expired.sort();
    let mut expected = vec![a_delivery.clone(), b_delivery.clone()];
    expected.sort();
    assert_eq!(expired, expected);
    assert!(listed(&app, token, "paused").await.is_empty());
    // The sweep leaves the index of unsent work.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE merchant_id = '{}' AND (status = 'pending' OR status = 'paused')",
            merchant.id
        ))
        .await,
        0
    );
    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hooksign_deliveries_expired_total "))
        .unwrap_or_else(|| panic!("no expired counter in {metrics}"))
        .parse()
        .unwrap();
    assert!(counted >= 2.0, "{counted}");

    // A is sent again by hand (the receiver answers 200 now) ...
    let retried = app
        .authed(
            Method::POST,
            &format!("/v1/deliveries/{a_delivery}/retry"),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    wait_for_status(&app, token, &a_delivery, "delivered").await;
    // ... and B by a replay of the expired ones: paused while B is disabled, sent once enabled.
    let replay = app
        .authed(Method::POST, &format!("/v1/endpoints/{b_id}/replay"), token)
        .json(&json!({ "status": ["expired"] }))
        .send()
        .await
        .unwrap();
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["requeued"], 1, "{replay}");
    assert_eq!(replay["backfilled"], 0, "{replay}");
    wait_for_status(&app, token, &b_delivery, "paused").await;
    enable_endpoint(&app, token, b_id).await;
    wait_for_status(&app, token, &b_delivery, "delivered").await;
    assert_eq!(waiting.received().len(), 1);
    assert_eq!(failing.received().len(), 2);
    let _ = a_id;
}

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

#[tokio::test]
async fn migration_0009_keeps_every_delivery_and_attempt_on_sqlite() {
    migration_0009_keeps_every_delivery_and_attempt(Backend::Sqlite).await;
}

#[tokio::test]
async fn migration_0009_keeps_every_delivery_and_attempt_on_postgres() {
    migration_0009_keeps_every_delivery_and_attempt(Backend::Postgres).await;
}

/// Rows written under migration 0008 survive 0009 (on SQLite a rebuild of `deliveries` and
/// `delivery_attempts`): every delivery and attempt, their foreign keys (checked, and still
/// cascading), every index; the new statuses are accepted and others still refused.
async fn migration_0009_keeps_every_delivery_and_attempt(backend: Backend) {
    use sqlx::migrate::Migrator;
    let dir = tempfile::tempdir().unwrap();
    let (pg, folder) = match backend {
        Backend::Sqlite => (None, "sqlite"),
        Backend::Postgres => match crate::helpers::PgDatabase::create().await {
            Some(db) => (Some(db), "postgres"),
            None => return,
        },
    };
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    let all = Migrator::new(folder.as_path()).await.unwrap();
    let mut before = Migrator::new(folder.as_path()).await.unwrap();
    before.migrations = all
        .migrations
        .iter()
        .filter(|m| m.version <= 8)
        .cloned()
        .collect();
    assert_eq!(
        before.migrations.len() + 1,
        all.migrations.iter().filter(|m| m.version <= 9).count()
    );
    let rows = "INSERT INTO merchants (id, name, disabled, lock_version, created_at, updated_at) VALUES ('mch_1', 'm', FALSE, 0, 0, 0);
        INSERT INTO endpoints (id, merchant_id, mode, url, scheme, max_in_flight, timeout_ms, created_at, updated_at) VALUES ('ep_1', 'mch_1', 'test', 'http://x', 'bolt', 1, 1000, 0, 0);
        INSERT INTO events (id, merchant_id, mode, type, body, created_at) VALUES ('evt_1', 'mch_1', 'test', 't', X, 0);
        INSERT INTO deliveries (id, event_id, endpoint_id, merchant_id, mode, status, attempts, next_attempt_at, last_error, created_at, updated_at) VALUES
            ('dlv_1', 'evt_1', 'ep_1', 'mch_1', 'test', 'pending', 2, 7, 'server_error', 1, 2),
            ('dlv_2', 'evt_1', 'ep_1', 'mch_1', 'test', 'delivered', 2, 7, NULL, 1, 2),
            ('dlv_3', 'evt_1', 'ep_1', 'mch_1', 'test', 'failed', 2, 7, 'timeout', 1, 2);
        INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, error_class) VALUES
            ('att_1', 'dlv_1', 1, 0, 500, 3, 'server_error'), ('att_2', 'dlv_1', 2, 0, 500, 3, 'server_error'),
            ('att_3', 'dlv_2', 1, 0, 500, 3, 'server_error'), ('att_4', 'dlv_2', 2, 0, 200, 3, NULL),
            ('att_5', 'dlv_3', 1, 0, NULL, 3, 'timeout'), ('att_6', 'dlv_3', 2, 0, NULL, 3, 'timeout');";
    macro_rules! check {
        ($pool:expr, $blob:literal) => {{
            let pool = $pool;
            before.run(&pool).await.unwrap();
            sqlx::raw_sql(&rows.replace(", X, 0)", concat!(", ", $blob, ", 0)")))
                .execute(&pool)
                .await
                .unwrap();
            all.run(&pool).await.unwrap();
            let count = |sql: &'static str| {
                let pool = pool.clone();
                async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
            };
            assert_eq!(count("SELECT COUNT(*) FROM deliveries").await, 3);
            assert_eq!(count("SELECT COUNT(*) FROM delivery_attempts").await, 6);
            assert_eq!(
                count("SELECT COUNT(*) FROM deliveries WHERE (id = 'dlv_1' AND status = 'pending' AND last_error = 'server_error') \
                       OR (id = 'dlv_2' AND status = 'delivered') OR (id = 'dlv_3' AND status = 'failed' AND attempts = 2)")
                .await,
                3
            );
            for status in ["paused", "expired"] {
                sqlx::query(&format!("UPDATE deliveries SET status = '{status}' WHERE id = 'dlv_1'"))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            assert!(sqlx::query("UPDATE deliveries SET status = 'lost' WHERE id = 'dlv_1'")
                .execute(&pool)
                .await
                .is_err());
            // The attempts still belong to their deliveries: deleting one takes its attempts.
            sqlx::query("DELETE FROM deliveries WHERE id = 'dlv_3'").execute(&pool).await.unwrap();
            assert_eq!(count("SELECT COUNT(*) FROM delivery_attempts").await, 4);
            pool
        }};
    }
    match backend {
        Backend::Sqlite => {
            use std::str::FromStr as _;
            let url = format!("sqlite://{}", dir.path().join("m.db").display());
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            let pool = check!(pool, "X'7B7D'");
            let dangling = sqlx::query("PRAGMA foreign_key_check")
                .fetch_all(&pool)
                .await
                .unwrap();
            assert!(dangling.is_empty(), "foreign_key_check is clean");
            let on: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(on, 1, "foreign keys stay on");
            let indexes: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 AND tbl_name IN ('deliveries', 'delivery_attempts', 'events') ORDER BY name",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let names: Vec<&str> = indexes.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "deliveries_by_endpoint",
                    "deliveries_by_event",
                    "deliveries_by_merchant",
                    "deliveries_due",
                    "deliveries_unsent",
                    "delivery_attempts_by_delivery",
                    "events_by_merchant",
                    "events_by_time",
                ]
            );
            // 0005's form of the due index, not 0004's.
            assert!(
                indexes[3]
                    .1
                    .contains("(next_attempt_at, lease_until, endpoint_id)"),
                "{}",
                indexes[3].1
            );
            let leftovers: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%0009%'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(leftovers, 0);
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&pg.as_ref().unwrap().url)
                .await
                .unwrap();
            let pool = check!(pool, "'\\x7b7d'");
            let unsent: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname IN ('deliveries_unsent', 'events_by_time', 'deliveries_due')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(unsent, 3);
            pool.close().await;
        }
    }
}
