//! What an unauthenticated or abusive client costs: connection timeouts and the connection
//! cap, JSON nesting depth, the envelope on every rejection, and requests cut by the deadline
//! showing up in the request log and metrics.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};
use crate::on_both_stores;

/// Serves `routes` behind the daemon's middleware on a port of its own.
async fn serve_with_middleware(
    routes: axum::Router<hooksign::server::AppState>,
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
    let started = std::time::Instant::now();
    let abusive = event(&nested(100_000)).send().await.unwrap();
    assert_error(abusive, 422, "invalid_request", "json_too_deep").await;
    assert!(started.elapsed() < Duration::from_secs(5));
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
