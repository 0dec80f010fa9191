//! Guards on an endpoint's sealed headers and on test pings: headers never follow the URL to
//! another origin unless given again, and test pings are bounded per endpoint and refused at
//! once past the bound.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::endpoint;
use crate::helpers::{assert_error, get_ok, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    a_url_moved_to_another_origin_needs_the_headers_again,
    test_pings_to_one_endpoint_are_bounded_and_the_rest_refused_at_once,
);

async fn ping(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app
        .authed(Method::POST, &format!("/v1/endpoints/{id}/test"), token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn patch(app: &TestApp, token: &str, id: &str, body: Value) -> reqwest::Response {
    app.authed(Method::PATCH, &format!("/v1/endpoints/{id}"), token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn a_url_moved_to_another_origin_needs_the_headers_again(app: TestApp) {
    let merchant = app.create_merchant("Moved url").await;
    let token = &merchant.test_token;
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let ep = endpoint(
        &app,
        token,
        json!({ "url": a.url, "headers": { "Authorization": "Bearer rcv-origin-a-0001" } }),
    )
    .await;
    let id = ep["id"].as_str().unwrap();

    // Another port without the headers: refused, nothing changes.
    let moved = patch(&app, token, id, json!({ "url": b.url })).await;
    let body = assert_error(moved, 409, "invalid_request", "headers_required").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("headers"), "{message}");
    let current: Value = get_ok(&app, token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(current["url"], a.url.as_str(), "{current}");
    assert_eq!(current["headers"]["Authorization"], "••••", "{current}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'endpoint.update'")
            .await,
        0,
        "a refused patch is not audited as an update"
    );
    ping(&app, token, id).await;
    let at_a = a.received();
    assert_eq!(at_a.len(), 1);
    assert_eq!(
        at_a[0].header("authorization"),
        Some("Bearer rcv-origin-a-0001")
    );
    assert!(b.received().is_empty(), "nothing reached the new url");

    // With new headers in the same patch: moved, and only the new value goes there.
    let moved = patch(
        &app,
        token,
        id,
        json!({ "url": b.url, "headers": { "Authorization": "Bearer rcv-origin-b-0002" } }),
    )
    .await;
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["url"], b.url.as_str());
    ping(&app, token, id).await;
    let at_b = b.received();
    assert_eq!(at_b.len(), 1);
    assert_eq!(
        at_b[0].header("authorization"),
        Some("Bearer rcv-origin-b-0002")
    );
    assert!(
        at_b[0]
            .headers
            .iter()
            .all(|(_, v)| !v.contains("rcv-origin-a")),
        "the old credential never reaches the new origin"
    );
    assert_eq!(a.received().len(), 1);

    // A new path on the same origin keeps the headers.
    let other_path = format!("{}/elsewhere", b.url);
    let same_origin = patch(&app, token, id, json!({ "url": other_path })).await;
    assert_eq!(same_origin.status(), 200);
    ping(&app, token, id).await;
    let at_b = b.received();
    assert_eq!(at_b.len(), 2);
    assert_eq!(
        at_b[1].header("authorization"),
        Some("Bearer rcv-origin-b-0002")
    );

    // `{}` drops them, and an endpoint without headers moves freely.
    let dropped = patch(&app, token, id, json!({ "url": a.url, "headers": {} })).await;
    assert_eq!(dropped.status(), 200);
    let bare = endpoint(&app, token, json!({ "url": a.url })).await;
    let bare_moved = patch(
        &app,
        token,
        bare["id"].as_str().unwrap(),
        json!({ "url": b.url }),
    )
    .await;
    assert_eq!(bare_moved.status(), 200);
}

async fn test_pings_to_one_endpoint_are_bounded_and_the_rest_refused_at_once(app: TestApp) {
    const PINGS: usize = 6;
    let merchant = app.create_merchant("Ping flood").await;
    let token = &merchant.test_token;
    let slow = Receiver::start().await;
    // The receiver holds every ping unanswered until released: the refusals must all come
    // back while the one ping let through is still waiting there.
    slow.hold();
    let ep = endpoint(&app, token, json!({ "url": slow.url })).await;
    let id = ep["id"].as_str().unwrap().to_owned();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..PINGS {
        let request = app
            .authed(Method::POST, &format!("/v1/endpoints/{id}/test"), token)
            .header("idempotency-key", format!("ping-flood-{i}"));
        tasks.spawn(async move { request.send().await.unwrap() });
    }
    for _ in 1..PINGS {
        let refused = tokio::time::timeout(Duration::from_secs(20), tasks.join_next())
            .await
            .expect("a refused ping is answered while the admitted one is still held, not after it")
            .unwrap()
            .unwrap();
        assert_error(refused, 409, "invalid_request", "ping_in_progress").await;
    }
    assert_eq!(slow.in_flight(), 1, "one ping held at the receiver");
    slow.release();
    let admitted = tasks.join_next().await.unwrap().unwrap();
    assert_eq!(admitted.status(), 200);
    let body: Value = admitted.json().await.unwrap();
    assert_eq!(body["succeeded"], true, "{body}");
    assert!(tasks.is_empty());
    assert_eq!(
        slow.most_in_flight(),
        1,
        "at most one ping held at the receiver"
    );
    assert_eq!(slow.received().len(), 1);

    // The slot is freed when the ping ends.
    ping(&app, token, &id).await;
    assert_eq!(slow.received().len(), 2);
}
