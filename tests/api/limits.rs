//! What an unauthenticated or abusive client costs: connection timeouts and the connection
//! cap, JSON nesting depth, the envelope on every rejection, and requests cut by the deadline
//! showing up in the request log and metrics.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};

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
