//! `Idempotency-Key` claims never outlive their request: a request past the deadline, a client
//! that hangs up, a handler that panics or a process that dies leaves no key blocked beyond a
//! short lease, and a retried event is created exactly once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, wait_until, Backend, TestApp};
use crate::on_both_stores;

// On both stores with a one-second request deadline.
on_both_stores!(
    spawn = super::short_deadline_app;
    a_request_past_the_deadline_runs_to_its_end_and_its_retry_replays_it,
    a_client_that_hangs_up_leaves_the_key_replayable,
    a_panicking_request_releases_its_key,
    a_dead_claim_lapses_with_its_lease,
    an_event_answered_503_on_the_deadline_is_created_once,
);

on_both_stores!(
    a_5xx_answer_is_not_stored_and_its_retry_runs_again,
    the_same_idempotency_key_on_another_path_is_refused,
    a_replay_is_served_by_another_daemon_on_the_same_database,
    an_idempotency_key_is_new_again_after_24_hours,
);

async fn short_deadline_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |config| config.http.request_timeout_secs = 1).await
}

/// The daemon's middleware and authentication around test routes: `/v1/slow` answers 201
/// after 2.5 s, `/v1/panic` panics; both count their runs.
async fn test_routes(app: &TestApp, runs: Arc<AtomicUsize>) -> String {
    let slow_runs = runs.clone();
    let routes = axum::Router::new()
        .route(
            "/v1/slow",
            post(move || {
                let runs = slow_runs.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    (axum::http::StatusCode::CREATED, format!("slow run {run}"))
                }
            }),
        )
        .route(
            "/v1/panic",
            post(move || {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if runs.load(Ordering::SeqCst) > 0 {
                        panic!("handler panics");
                    }
                    "unreachable"
                }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            app.state.auth.clone(),
            hooksign::auth::idempotency::idempotency,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.state.auth.clone(),
            hooksign::auth::authenticate,
        ));
    let router = hooksign::api::with_middleware(routes, app.state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    base
}

async fn post_slow(app: &TestApp, base: &str, token: &str, path: &str) -> reqwest::Response {
    app.client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("idempotency-key", "slow-1")
        .send()
        .await
        .unwrap()
}

/// Waits until `sql` (a count over `idempotency_keys`) answers `expected`.
async fn wait_for_rows(app: &TestApp, what: &str, sql: &str, expected: i64) {
    wait_until(what, Duration::from_secs(15), || async {
        (app.count(sql).await == expected).then_some(())
    })
    .await;
}

async fn a_request_past_the_deadline_runs_to_its_end_and_its_retry_replays_it(app: TestApp) {
    let merchant = app.create_merchant("Slow").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let base = test_routes(&app, runs.clone()).await;
    let first = post_slow(&app, &base, &merchant.test_token, "/v1/slow").await;
    assert_error(first, 503, "api_error", "request_timeout").await;
    // Still running: the retry waits its turn instead of running it a second time.
    let busy = post_slow(&app, &base, &merchant.test_token, "/v1/slow").await;
    assert_error(
        busy,
        409,
        "invalid_request",
        "idempotency_request_in_progress",
    )
    .await;
    wait_for_rows(
        &app,
        "the slow request to store its answer",
        "SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = 'slow-1' AND state = 'done'",
        1,
    )
    .await;
    let replayed = post_slow(&app, &base, &merchant.test_token, "/v1/slow").await;
    assert_eq!(replayed.status(), 201);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.text().await.unwrap(), "slow run 1");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

async fn a_client_that_hangs_up_leaves_the_key_replayable(app: TestApp) {
    let merchant = app.create_merchant("Gone").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let base = test_routes(&app, runs.clone()).await;
    let gone = app
        .client
        .post(format!("{base}/v1/slow"))
        .bearer_auth(&merchant.test_token)
        .header("idempotency-key", "slow-1")
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err(), "the client hung up");
    // The request runs to its end and stores its answer: no claim is left behind.
    wait_for_rows(
        &app,
        "no in-flight claim left behind by the request whose client hung up",
        "SELECT COUNT(*) FROM idempotency_keys WHERE state = 'in_flight'",
        0,
    )
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE state = 'done'")
            .await,
        1,
        "its answer is stored"
    );
    let replayed = post_slow(&app, &base, &merchant.test_token, "/v1/slow").await;
    assert_eq!(replayed.status(), 201);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

async fn a_panicking_request_releases_its_key(app: TestApp) {
    let merchant = app.create_merchant("Panics").await;
    let runs = Arc::new(AtomicUsize::new(0));
    let base = test_routes(&app, runs.clone()).await;
    let first = post_slow(&app, &base, &merchant.test_token, "/v1/panic").await;
    assert_error(first, 500, "api_error", "internal_error").await;
    wait_for_rows(
        &app,
        "the panicking request's key to be released",
        "SELECT COUNT(*) FROM idempotency_keys",
        0,
    )
    .await;
    // Released, not stuck: the retry runs again (and panics again), no 409.
    let again = post_slow(&app, &base, &merchant.test_token, "/v1/panic").await;
    assert_eq!(again.status(), 500);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    wait_for_rows(
        &app,
        "the second panicking request's key to be released",
        "SELECT COUNT(*) FROM idempotency_keys",
        0,
    )
    .await;
}

async fn a_dead_claim_lapses_with_its_lease(app: TestApp) {
    let merchant = app.create_merchant("Crashed").await;
    let key_id: hooksign::ids::ApiKeyId = merchant.body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["mode"] == "test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // A claim the daemon makes holds for the request timeout plus a margin, not for a day.
    let runs = Arc::new(AtomicUsize::new(0));
    let base = test_routes(&app, runs).await;
    let (client, url, token) = (
        app.client.clone(),
        format!("{base}/v1/slow"),
        merchant.test_token.clone(),
    );
    let slow = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(token)
            .header("idempotency-key", "lease")
            .send()
            .await
    });
    wait_for_rows(
        &app,
        "the slow request's in-flight claim",
        "SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = 'lease' AND state = 'in_flight'",
        1,
    )
    .await;
    assert_eq!(
        app.count(
            "SELECT expires_at - created_at FROM idempotency_keys WHERE idempotency_key = 'lease' AND state = 'in_flight'"
        )
        .await,
        16_000,
        "lease = http.request_timeout_secs (1) + 15 s"
    );
    let _ = slow.await;
    // A process claimed the key and died before answering: nothing will release it.
    let now = app.clock_now();
    let lease = chrono::Duration::seconds(1 + 15);
    app.state
        .store
        .begin_idempotent(key_id, "crashed", "fingerprint", now, now + lease)
        .await
        .unwrap();
    let retry = || {
        app.authed(Method::POST, "/v1/api-keys", &merchant.test_token)
            .header("idempotency-key", "crashed")
            .json(&json!({ "name": "after the crash" }))
            .send()
    };
    let busy = retry().await.unwrap();
    assert_error(
        busy,
        409,
        "invalid_request",
        "idempotency_request_in_progress",
    )
    .await;
    // Once the lease (request timeout + margin) has passed, not after 24 hours.
    app.clock.advance(chrono::Duration::seconds(17));
    let created = retry().await.unwrap();
    assert_eq!(created.status(), 201);
    assert!(created.headers().get("idempotent-replayed").is_none());
}

/// Holds the database's lock on new events until dropped (SQLite: the write lock; PostgreSQL:
/// an exclusive lock on `events`).
async fn hold_event_writes(app: &TestApp) -> tokio::sync::oneshot::Sender<()> {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel::<()>();
    let url = app.config.database.url.clone();
    let backend = app.backend;
    tokio::spawn(async move {
        use sqlx::Connection as _;
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let _ = locked.send(());
                let _ = released.await;
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                let mut tx = conn.begin().await.unwrap();
                sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let _ = locked.send(());
                let _ = released.await;
                tx.commit().await.unwrap();
            }
        }
    });
    is_locked.await.unwrap();
    release
}

async fn an_event_answered_503_on_the_deadline_is_created_once(app: TestApp) {
    let merchant = app.create_merchant("Slow ingest").await;
    let send = || {
        app.authed(Method::POST, "/v1/events", &merchant.test_token)
            .header("idempotency-key", "order-1")
            .json(&json!({ "type": "order.created", "payload": { "order": 1 } }))
            .send()
    };
    let release = hold_event_writes(&app).await;
    let first = send().await.unwrap();
    assert_error(first, 503, "api_error", "request_timeout").await;
    let _ = release.send(());
    // The client retries until it has an answer; each 409 means "still running".
    let mut answer = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let retry = send().await.unwrap();
        if retry.status() == 409 {
            // A claim whose request never got to run (SQLite: blocked before claiming)
            // lapses with its lease; let time pass for it.
            app.clock.advance(chrono::Duration::seconds(5));
            continue;
        }
        answer = Some(retry);
        break;
    }
    let answer = answer.expect("the retry gets an answer within the lease");
    assert_eq!(answer.status(), 202);
    if app.backend == Backend::Postgres {
        // The first request ran to its end: its 202 is what the retry gets.
        assert_eq!(answer.headers()["idempotent-replayed"], "true");
    }
    let event: Value = answer.json().await.unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events").await,
        1,
        "exactly one event"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM events WHERE id = '{}'",
            event["id"].as_str().unwrap()
        ))
        .await,
        1
    );
    // And it stays one: later retries replay it.
    let later = send().await.unwrap();
    assert_eq!(later.status(), 202);
    assert_eq!(later.headers()["idempotent-replayed"], "true");
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
}

/// `POST /v1/api-keys` named `name` under `Idempotency-Key: idem`.
async fn create_key_once(
    app: &TestApp,
    base: &str,
    token: &str,
    idem: &str,
    name: &str,
) -> reqwest::Response {
    app.client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(token)
        .header("idempotency-key", idem)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true")
}

async fn a_5xx_answer_is_not_stored_and_its_retry_runs_again(app: TestApp) {
    let merchant = app.create_merchant("Broken audit").await;
    let token = merchant.live_token.as_str();
    let named = "SELECT COUNT(*) FROM api_keys WHERE name = 'ci'";
    // Without its audit table the handler's transaction fails: a 500 of the handler's own.
    app.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        .await
        .unwrap();
    let failed = create_key_once(&app, &app.base, token, "retry-me", "ci").await;
    assert_error(failed, 500, "api_error", "internal_error").await;
    app.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        .await
        .unwrap();
    assert_eq!(
        app.count(named).await,
        0,
        "the failed request changed nothing"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys").await,
        0,
        "the 500 was not stored"
    );
    let retried = create_key_once(&app, &app.base, token, "retry-me", "ci").await;
    assert_eq!(retried.status(), 201, "the retry runs again");
    assert!(!replayed(&retried));
    assert_eq!(app.count(named).await, 1);
    let again = create_key_once(&app, &app.base, token, "retry-me", "ci").await;
    assert_eq!(again.status(), 201);
    assert!(replayed(&again), "the 201 is what is stored");
    assert_eq!(app.count(named).await, 1);
}

async fn the_same_idempotency_key_on_another_path_is_refused(app: TestApp) {
    let merchant = app.create_merchant("Two paths").await;
    let token = merchant.live_token.as_str();
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let key = create_key_once(&app, &app.base, token, name, name).await;
        assert_eq!(key.status(), 201);
        let key: Value = key.json().await.unwrap();
        ids.push(key["id"].as_str().unwrap().to_owned());
    }
    // Bare POSTs on two paths of the same route: nothing but the path tells them apart.
    let revoke = |id: &str| {
        app.authed(Method::POST, &format!("/v1/api-keys/{id}/revoke"), token)
            .header("idempotency-key", "one-key")
            .send()
    };
    assert_eq!(revoke(&ids[0]).await.unwrap().status(), 200);
    let (keys, audit) = (
        "SELECT COUNT(*) FROM api_keys",
        "SELECT COUNT(*) FROM audit_events",
    );
    let (keys_before, audit_before) = (app.count(keys).await, app.count(audit).await);
    assert_error(
        revoke(&ids[1]).await.unwrap(),
        422,
        "invalid_request",
        "idempotency_key_reused",
    )
    .await;
    assert_error(
        create_key_once(&app, &app.base, token, "one-key", "third").await,
        422,
        "invalid_request",
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE id = '{}' AND revoked_at IS NULL",
            ids[1]
        ))
        .await,
        1,
        "the other path did not run"
    );
    assert_eq!(
        app.count(keys).await,
        keys_before,
        "nor did the other route"
    );
    assert_eq!(app.count(audit).await, audit_before);
    // The key still belongs to the first request, which still replays.
    let again = revoke(&ids[0]).await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(replayed(&again));
}

async fn a_replay_is_served_by_another_daemon_on_the_same_database(app: TestApp) {
    let merchant = app.create_merchant("Two daemons").await;
    let token = merchant.live_token.as_str();
    let first = create_key_once(&app, &app.base, token, "shared", "ci").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let other = app.another_instance().await;
    let there = create_key_once(&app, &other.base, token, "shared", "ci").await;
    assert_eq!(there.status(), 201);
    assert!(
        replayed(&there),
        "the other daemon replays, it does not run it again"
    );
    let there: Value = there.json().await.unwrap();
    assert_eq!(there, first, "the same answer, the same key and token");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE name = 'ci'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'idempotency.replay'")
            .await,
        1,
        "handing the token out again is audited"
    );
}

async fn an_idempotency_key_is_new_again_after_24_hours(app: TestApp) {
    let merchant = app.create_merchant("A day later").await;
    let token = merchant.live_token.as_str();
    let first = create_key_once(&app, &app.base, token, "daily", "first").await;
    assert_eq!(first.status(), 201);
    app.clock
        .advance(chrono::Duration::hours(24) - chrono::Duration::seconds(1));
    assert_error(
        create_key_once(&app, &app.base, token, "daily", "second").await,
        422,
        "invalid_request",
        "idempotency_key_reused",
    )
    .await;
    let same = create_key_once(&app, &app.base, token, "daily", "first").await;
    assert_eq!(same.status(), 201);
    assert!(replayed(&same), "still remembered just before 24 hours");
    app.clock.advance(chrono::Duration::seconds(2));
    let anew = create_key_once(&app, &app.base, token, "daily", "second").await;
    assert_eq!(anew.status(), 201, "a day later the key is free");
    assert!(!replayed(&anew));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE name = 'second'")
            .await,
        1
    );
    // Now it is the new request's.
    assert_error(
        create_key_once(&app, &app.base, token, "daily", "first").await,
        422,
        "invalid_request",
        "idempotency_key_reused",
    )
    .await;
}
