//! What an unauthenticated or abusive client costs: connection timeouts and the connection
//! cap, JSON nesting depth, the envelope on every rejection, and requests cut by the deadline
//! showing up in the request log and metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;

use crate::helpers::{assert_error, spawn_app_with, wait_until, Backend, TestApp};
use crate::on_both_stores;

/// Serves `routes` behind the daemon's middleware on a port of its own.
async fn serve_with_middleware(
    routes: axum::Router<hooksign::state::AppState>,
    app: &TestApp,
) -> SocketAddr {
    let router = hooksign::api::with_middleware(routes, app.state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_the_deadline_is_counted_in_metrics() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.request_timeout_secs = 1
    })
    .await
    .expect("sqlite app");
    let routes = axum::Router::new().route(
        "/test/outlasts-the-deadline",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "too late"
        }),
    );
    let addr = serve_with_middleware(routes, &app).await;
    let response = reqwest::get(format!("http://{addr}/test/outlasts-the-deadline"))
        .await
        .unwrap();
    assert_error(response, 503, "api_error", "request_timeout").await;
    let metrics = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"hooksign_http_requests_total{route="/test/outlasts-the-deadline",method="GET",status="503"} 1"#
        ),
        "{metrics}"
    );
}

on_both_stores!(every_rejection_uses_the_envelope);

/// Whatever layer refuses (the body limit behind `/v1/sign`'s raw body, a JSON extractor, a
/// path that is not UTF-8, a query, a method), the answer is the JSON envelope.
async fn every_rejection_uses_the_envelope(app: TestApp) {
    let merchant = app.create_merchant("Envelope Co").await;
    let token = &merchant.test_token;
    let oversize = "x".repeat(app.config.http.body_limit_bytes + 1);
    for (path, content_type) in [
        ("/v1/sign", "application/octet-stream"),
        ("/v1/sign", "application/json"),
        ("/v1/events", "application/json"),
        ("/v1/endpoints", "application/json"),
        ("/v1/signing-secret/initiate", "application/json"),
    ] {
        let response = app
            .authed(Method::POST, path, token)
            .header("content-type", content_type)
            .body(oversize.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        assert_error(response, 413, "invalid_request", "body_too_large").await;
    }
    // A chunked body (no Content-Length) over the limit: refused while reading.
    let mut request = format!(
        "POST /v1/sign HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    for chunk in oversize.as_bytes().chunks(8 * 1024) {
        request.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            String::from_utf8_lossy(chunk)
        ));
    }
    request.push_str("0\r\n\r\n");
    let answer = raw_exchange(&app, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");

    let bad_path = app
        .authed(Method::GET, "/v1/endpoints/%FF%FE", token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_path.headers()["content-type"], "application/json");
    assert_error(bad_path, 400, "invalid_request", "invalid_request").await;
    let garbage_id = app
        .authed(Method::GET, "/v1/endpoints/not-an-id", token)
        .send()
        .await
        .unwrap();
    assert_error(garbage_id, 404, "invalid_request", "resource_missing").await;
    let bad_query = app
        .authed(Method::GET, "/v1/endpoints?limit=many", token)
        .send()
        .await
        .unwrap();
    assert_error(bad_query, 400, "invalid_request", "invalid_query").await;
    let no_content_type = app
        .authed(Method::POST, "/v1/endpoints", token)
        .body(r#"{"url":"https://example.com/hook"}"#)
        .send()
        .await
        .unwrap();
    assert_error(
        no_content_type,
        415,
        "invalid_request",
        "unsupported_media_type",
    )
    .await;
    let bad_json = app
        .authed(Method::POST, "/v1/events", token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(bad_json, 400, "invalid_request", "invalid_json").await;
    let wrong_method = app
        .authed(Method::PUT, "/v1/sign", token)
        .send()
        .await
        .unwrap();
    assert_error(wrong_method, 405, "invalid_request", "method_not_allowed").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM endpoints").await, 0);
}

/// Sends raw bytes on a new connection and reads the answer until the server closes it
/// (the request asks for `connection: close`) or 10 s pass.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    // The server may answer and close before reading the whole body: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

on_both_stores!(json_nested_deeper_than_the_limit_is_refused_before_parsing);

/// Arrays nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

async fn json_nested_deeper_than_the_limit_is_refused_before_parsing(app: TestApp) {
    use hooksign::api::MAX_JSON_DEPTH;
    let merchant = app.create_merchant("Deep Co").await;
    let token = &merchant.test_token;
    let event = |payload: &str| {
        app.authed(Method::POST, "/v1/events", token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"type":"order.created","payload":{payload}}}"#))
    };
    // The body's own object is the first level: the payload may nest one less.
    let deepest = event(&nested(MAX_JSON_DEPTH - 1)).send().await.unwrap();
    assert_eq!(deepest.status(), 202);
    let too_deep = event(&nested(MAX_JSON_DEPTH)).send().await.unwrap();
    assert_error(too_deep, 422, "invalid_request", "json_too_deep").await;
    let abusive = event(&nested(100_000)).send().await.unwrap();
    assert_error(abusive, 422, "invalid_request", "json_too_deep").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
    // The same rule, with the same answer, for every JSON body: a deep top-level body, and an
    // optional body.
    let deep_merchant = app
        .operator(Method::POST, "/v1/merchants")
        .header("content-type", "application/json")
        .body(nested(MAX_JSON_DEPTH + 1))
        .send()
        .await
        .unwrap();
    assert_error(deep_merchant, 422, "invalid_request", "json_too_deep").await;
    let deep_initiate = app
        .authed(Method::POST, "/v1/signing-secret/initiate", token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"complete_at":{}}}"#, nested(MAX_JSON_DEPTH)))
        .send()
        .await
        .unwrap();
    assert_error(deep_initiate, 422, "invalid_request", "json_too_deep").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM merchants").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM signing_secrets WHERE state = 'pending'")
            .await,
        0
    );
}

// Connections. The connection loop sits below storage, so these run on SQLite only; each
// configures short timeouts so it ends within a few seconds.

/// A fresh TCP connection to the daemon.
async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes `stream` (or `limit` passes): what arrived, and how long the
/// connection stayed open (`None`: still open at `limit`). The tests' limits lie far below the
/// 30 s of the timer they do not test, so a close before `limit` is the tested timer's; no
/// test asserts how soon after its timeout the close came.
async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (received, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Some(started.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `GET /healthz` on a keep-alive connection and reads the whole answer.
async fn healthz_on(stream: &mut tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&received).contains(r#""status":"ok""#) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout_secs = 1;
        config.http.idle_timeout_secs = 30;
    })
    .await
    .expect("sqlite app");
    let mut silent = connect(&app).await;
    let (received, open_for) = read_until_closed(&mut silent, Duration::from_secs(8)).await;
    let open_for = open_for.expect("the daemon closes a silent connection");
    assert!(received.is_empty());
    assert!(
        open_for >= Duration::from_millis(900),
        "closed after {open_for:?}, before the 1 s timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_a_byte_at_a_time_are_cut_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout_secs = 2;
        config.http.idle_timeout_secs = 30;
    })
    .await
    .expect("sqlite app");
    let (mut reader, mut writer) = connect(&app).await.into_split();
    // 36 bytes at one every 500 ms would take 18 s.
    let trickle = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let (received, open_for) = read_until_closed(&mut reader, Duration::from_secs(10)).await;
    trickle.abort();
    let open_for = open_for.expect("the daemon closes a slow-headers connection");
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        open_for >= Duration::from_millis(1500),
        "closed after {open_for:?}, before the 2 s timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout_secs = 30;
        config.http.idle_timeout_secs = 1;
    })
    .await
    .expect("sqlite app");
    let mut stream = connect(&app).await;
    healthz_on(&mut stream).await;
    // Kept alive: a second request on the same connection is answered.
    healthz_on(&mut stream).await;
    let (_, open_for) = read_until_closed(&mut stream, Duration::from_secs(8)).await;
    let open_for = open_for.expect("the daemon closes an idle connection");
    assert!(
        open_for >= Duration::from_millis(900),
        "closed after {open_for:?}, before the 1 s idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_idle_connections_hold_twice_the_cap() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout_secs = 30;
        config.http.idle_timeout_secs = 30;
        config.http.max_connections = 20;
    })
    .await
    .expect("sqlite app");
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(connect(&app).await);
    }
    // The oldest were closed to make room for the newest. Of those, some serve a request and
    // wait kept alive, the others never send anything.
    for stream in held.iter_mut().rev().take(10) {
        healthz_on(stream).await;
    }
    let health = app
        .request(Method::GET, "/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(health.status(), 200);
    // The daemon kept at most 20 open: the others were closed to make room.
    let mut closed = 0;
    for stream in &mut held {
        if read_until_closed(stream, Duration::from_millis(200))
            .await
            .1
            .is_some()
        {
            closed += 1;
        }
    }
    assert!(closed >= 20, "{closed} of 40 closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_closes_idle_connections_and_stops_accepting() {
    use axum::extract::ConnectInfo;
    let app = spawn_app_with(Backend::Sqlite, |_| {})
        .await
        .expect("sqlite app");
    // Counts the requests that reached the handler, so shutdown starts with one in flight.
    let arrived = Arc::new(AtomicUsize::new(0));
    let arrivals = arrived.clone();
    let routes = axum::Router::new().route(
        "/test/slow-peer",
        axum::routing::get(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                arrivals.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(800)).await;
                peer.ip().to_string()
            },
        ),
    );
    let router = hooksign::api::with_middleware(routes, app.state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = hooksign::serve::ConnectionLimits::new(&app.config, None);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(hooksign::serve::serve(
        listener,
        router,
        limits,
        stop.clone(),
    ));
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let in_flight = tokio::spawn(reqwest::get(format!("http://{addr}/test/slow-peer")));
    wait_until(
        "the slow request to reach its handler",
        Duration::from_secs(15),
        || async { (arrived.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    stop.cancel();
    let (_, idle_open_for) = read_until_closed(&mut idle, Duration::from_secs(2)).await;
    assert!(idle_open_for.is_some(), "an idle connection closes at once");
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "127.0.0.1",
        "ConnectInfo reaches handlers"
    );
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("serve returns once its connections are gone")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

crate::on_both_stores!(
    configure = |config: &mut hooksign::config::Config| {
        config.delivery.max_endpoints_per_mode = 3;
    };
    endpoints_per_mode_are_capped_even_under_concurrent_creates,
);

async fn endpoints_per_mode_are_capped_even_under_concurrent_creates(app: TestApp) {
    let merchant = app.create_merchant("Many Endpoints").await;
    let creates: Vec<_> = (0..10)
        .map(|n| {
            app.authed(Method::POST, "/v1/endpoints", &merchant.test_token)
                .json(&serde_json::json!({ "url": format!("https://example.com/hook/{n}") }))
                .send()
        })
        .collect();
    let mut created = 0;
    for response in futures_join_all(creates).await {
        let response = response.unwrap();
        if response.status() == 201 {
            created += 1;
        } else {
            assert_error(response, 409, "invalid_request", "endpoint_limit_reached").await;
        }
    }
    assert_eq!(created, 3);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM endpoints WHERE mode = 'test'")
            .await,
        3
    );
    // The other mode has a cap of its own.
    let live = app
        .authed(Method::POST, "/v1/endpoints", &merchant.live_token)
        .json(&serde_json::json!({ "url": "https://example.com/live" }))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 201);

    // The list pages through them, newest first.
    let list = |query: String| {
        let app = &app;
        let token = merchant.test_token.clone();
        async move {
            app.authed(Method::GET, &format!("/v1/endpoints{query}"), &token)
                .send()
                .await
                .unwrap()
        }
    };
    let first: serde_json::Value = list("?limit=2".into()).await.json().await.unwrap();
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let last_id = first["data"][1]["id"].as_str().unwrap().to_owned();
    assert!(first["data"][0]["id"].as_str().unwrap() > last_id.as_str());
    let second: serde_json::Value = list(format!("?limit=2&starting_after={last_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["has_more"], false);
    assert!(second["data"][0]["id"].as_str().unwrap() < last_id.as_str());
    let garbage = list("?starting_after=garbage".into()).await;
    assert_error(garbage, 400, "invalid_request", "invalid_cursor").await;

    // Deleting one makes room again.
    let deleted = app
        .authed(
            Method::DELETE,
            &format!("/v1/endpoints/{last_id}"),
            &merchant.test_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let again = app
        .authed(Method::POST, "/v1/endpoints", &merchant.test_token)
        .json(&serde_json::json!({ "url": "https://example.com/again" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
}

/// Awaits every future, concurrently, in order.
async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

crate::on_both_stores!(
    configure = |config: &mut hooksign::config::Config| {
        config.delivery.ingest_queue_capacity = 1;
    };
    a_saturated_ingest_queue_answers_503_with_retry_after_and_stores_nothing,
);

async fn a_saturated_ingest_queue_answers_503_with_retry_after_and_stores_nothing(app: TestApp) {
    use sqlx::Connection;
    let merchant = app.create_merchant("Busy Ingest").await;
    // Hold the database's write lock on the events table, so ingest transactions wait.
    enum Lock {
        Sqlite(sqlx::SqliteConnection),
        Postgres(sqlx::PgConnection),
    }
    let url = &app.config.database.url;
    let mut lock = match app.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Lock::Sqlite(conn)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .unwrap();
            Lock::Postgres(conn)
        }
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let events: Vec<_> = (0..20)
        .map(|n| {
            let request = app
                .authed(Method::POST, "/v1/events", &merchant.test_token)
                .json(&serde_json::json!({ "type": "order.created", "payload": { "n": n } }))
                .send();
            let answered = answered.clone();
            async move {
                let response = request.await;
                answered.fetch_add(1, Ordering::SeqCst);
                response
            }
        })
        .collect();
    let answers = tokio::spawn(futures_join_all(events));
    // The refused ones are answered at once, while the lock is held; the others wait for it.
    wait_until(
        "at least 10 of 20 events to be answered while their writes are blocked",
        Duration::from_secs(15),
        || async { (answered.load(Ordering::SeqCst) >= 10).then_some(()) },
    )
    .await;
    match &mut lock {
        Lock::Sqlite(conn) => sqlx::query("COMMIT").execute(conn).await.map(|_| ()),
        Lock::Postgres(conn) => sqlx::query("COMMIT").execute(conn).await.map(|_| ()),
    }
    .unwrap();
    let mut accepted = 0;
    let mut refused = 0;
    for response in answers.await.unwrap() {
        let response = response.unwrap();
        if response.status() == 202 {
            accepted += 1;
            continue;
        }
        refused += 1;
        assert_eq!(response.headers()["retry-after"], "1");
        assert_error(response, 503, "api_error", "ingest_saturated").await;
    }
    assert!(refused >= 10, "{refused} of 20 refused");
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, accepted);
}
