//! The OpenAPI document tells the truth: every documented bound is where the server's
//! validation starts refusing, integer fields take integral floats (`17830.0`, which JSON
//! Schema counts as an integer), optional bodies may be absent or `null`, and the answers the
//! shapes allow are the answers given. `.ci/schemathesis.sh` fuzzes the whole document; these
//! pin the edges down on both stores.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp};
use crate::on_both_stores;

on_both_stores!(
    documented_bounds_are_the_servers_edges,
    integer_fields_take_integral_floats,
    optional_bodies_may_be_absent_or_null,
    a_cursor_that_names_no_listed_object_is_404,
    names_urls_and_header_values_are_checked_as_sent,
);

async fn document(app: &TestApp) -> Value {
    app.request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A numeric keyword of a component schema's property (`minimum`, `maxLength`…).
fn keyword(doc: &Value, schema: &str, property: &str, name: &str) -> i64 {
    doc["components"]["schemas"][schema]["properties"][property][name]
        .as_i64()
        .unwrap_or_else(|| panic!("{schema}.{property} documents no {name}"))
}

/// A numeric keyword of a query parameter of an operation.
fn parameter_keyword(doc: &Value, path: &str, parameter: &str, name: &str) -> i64 {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == parameter))
        .and_then(|p| p["schema"][name].as_i64())
        .unwrap_or_else(|| panic!("GET {path}: {parameter} documents no {name}"))
}

async fn send(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Response {
    app.authed(method, path, token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn create_key(app: &TestApp, token: &str, name: &str) -> String {
    let response = send(
        app,
        Method::POST,
        "/v1/api-keys",
        token,
        json!({ "name": name }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let key: Value = response.json().await.unwrap();
    key["id"].as_str().unwrap().to_owned()
}

async fn documented_bounds_are_the_servers_edges(app: TestApp) {
    let doc = document(&app).await;
    let merchant = app.create_merchant("Bounds").await;
    let token = merchant.test_token.as_str();

    for path in [
        "/v1/events",
        "/v1/endpoints",
        "/v1/api-keys",
        "/v1/deliveries",
        "/v1/audit-events",
    ] {
        let (min, max) = (
            parameter_keyword(&doc, path, "limit", "minimum"),
            parameter_keyword(&doc, path, "limit", "maximum"),
        );
        for (limit, status) in [(min, 200), (max, 200), (max + 1, 400), (min - 1, 400)] {
            let response = app
                .authed(Method::GET, &format!("{path}?limit={limit}"), token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "GET {path}?limit={limit}");
        }
    }

    // Endpoint fields, one at a time at each edge.
    for (property, code) in [
        ("max_in_flight", "invalid_max_in_flight"),
        ("timeout_ms", "invalid_timeout"),
    ] {
        let min = keyword(&doc, "EndpointBody", property, "minimum");
        let max = keyword(&doc, "EndpointBody", property, "maximum");
        for value in [min, max] {
            let body = json!({ "url": "https://example.com/hook", property: value });
            let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
            assert_eq!(response.status(), 201, "{property} = {value}");
        }
        for value in [min - 1, max + 1] {
            let body = json!({ "url": "https://example.com/hook", property: value });
            let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
            assert_error(response, 422, "invalid_request", code).await;
        }
    }
    let longest = keyword(&doc, "EndpointBody", "description", "maxLength") as usize;
    for (length, status) in [(longest, 201), (longest + 1, 422)] {
        let body = json!({ "url": "https://example.com/hook", "description": "d".repeat(length) });
        let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
        assert_eq!(response.status(), status, "description of {length}");
    }
    let headers = &doc["components"]["schemas"]["EndpointBody"]["properties"]["headers"];
    let most = headers["maxProperties"].as_u64().unwrap() as usize;
    let longest_value = headers["additionalProperties"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    for (count, length, status) in [
        (most, longest_value, 201),
        (most + 1, 1, 422),
        (1, longest_value + 1, 422),
    ] {
        let map: serde_json::Map<String, Value> = (0..count)
            .map(|i| (format!("X-Extra-{i}"), json!("v".repeat(length))))
            .collect();
        let body = json!({ "url": "https://example.com/hook", "headers": map });
        let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
        assert_eq!(response.status(), status, "{count} headers of {length}");
    }

    // Rotation schedule grace.
    let (min, max) = (
        keyword(&doc, "PutSchedule", "grace", "minimum"),
        keyword(&doc, "PutSchedule", "grace", "maximum"),
    );
    for (grace, status) in [(min, 200), (max, 200), (min - 1, 422), (max + 1, 422)] {
        let body = json!({ "cron": "0 0 3 1 * *", "grace": grace });
        let response = send(
            &app,
            Method::PUT,
            "/v1/signing-secret/schedule",
            token,
            body,
        )
        .await;
        assert_eq!(response.status(), status, "grace = {grace}");
    }

    // Roll overlap.
    let (min, max) = (
        keyword(&doc, "RollApiKey", "expires_in", "minimum"),
        keyword(&doc, "RollApiKey", "expires_in", "maximum"),
    );
    for (expires_in, status) in [(min - 1, 422), (max + 1, 422), (min, 201), (max, 201)] {
        let id = create_key(&app, token, &format!("roll {expires_in}")).await;
        let body = json!({ "expires_in": expires_in });
        let path = format!("/v1/api-keys/{id}/roll");
        let response = send(&app, Method::POST, &path, token, body).await;
        assert_eq!(response.status(), status, "expires_in = {expires_in}");
        if status == 201 {
            // Back under the five-key limit for the next round.
            let rolled: Value = response.json().await.unwrap();
            let new_id = rolled["api_key"]["id"].as_str().unwrap();
            let revoke = format!("/v1/api-keys/{new_id}/revoke");
            let response = send(&app, Method::POST, &revoke, token, json!({})).await;
            assert_eq!(response.status(), 200);
            let response = send(
                &app,
                Method::POST,
                &format!("/v1/api-keys/{id}/revoke"),
                token,
                json!({}),
            )
            .await;
            assert_eq!(response.status(), 200);
        } else {
            let response = send(
                &app,
                Method::POST,
                &format!("/v1/api-keys/{id}/revoke"),
                token,
                json!({}),
            )
            .await;
            assert_eq!(response.status(), 200);
        }
    }

    // Names.
    let longest = keyword(&doc, "CreateApiKey", "name", "maxLength") as usize;
    let id = create_key(&app, token, &"n".repeat(longest)).await;
    assert!(id.starts_with("key_"));
    let response = send(
        &app,
        Method::POST,
        "/v1/api-keys",
        token,
        json!({ "name": "n".repeat(longest + 1) }),
    )
    .await;
    assert_error(response, 422, "invalid_request", "invalid_name").await;
}

async fn integer_fields_take_integral_floats(app: TestApp) {
    let merchant = app.create_merchant("Floats").await;
    let token = merchant.test_token.as_str();
    let body =
        json!({ "url": "https://example.com/hook", "max_in_flight": 7.0, "timeout_ms": 1000.0 });
    let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
    assert_eq!(response.status(), 201);
    let endpoint: Value = response.json().await.unwrap();
    assert_eq!(
        (
            endpoint["max_in_flight"].clone(),
            endpoint["timeout_ms"].clone()
        ),
        (json!(7), json!(1000))
    );

    // A fraction, or a number in a string, is still refused.
    for bad in [json!(7.5), json!("7")] {
        let body = json!({ "url": "https://example.com/hook", "max_in_flight": bad });
        let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
        assert_error(response, 422, "invalid_request", "invalid_body").await;
    }

    let body = json!({ "cron": "0 0 3 1 * *", "grace": 3600.0 });
    let response = send(
        &app,
        Method::PUT,
        "/v1/signing-secret/schedule",
        token,
        body,
    )
    .await;
    assert_eq!(response.status(), 200);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["schedule"]["grace_seconds"], 3600);

    let id = create_key(&app, token, "float roll").await;
    let path = format!("/v1/api-keys/{id}/roll");
    let response = send(
        &app,
        Method::POST,
        &path,
        token,
        json!({ "expires_in": 17830.0 }),
    )
    .await;
    assert_eq!(response.status(), 201);

    let response = app
        .authed(Method::GET, "/v1/endpoints?limit=1.0", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let response = app
        .authed(Method::GET, "/v1/endpoints?limit=1.5", token)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "invalid_request", "invalid_query").await;
}

async fn optional_bodies_may_be_absent_or_null(app: TestApp) {
    let doc = document(&app).await;
    let merchant = app.create_merchant("Optional").await;
    let token = merchant.test_token.as_str();
    for path in [
        "/v1/signing-secret/initiate",
        "/v1/api-keys/{id}/roll",
        "/v1/endpoints/{id}/replay",
    ] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert_ne!(body["required"], true, "{path}: the body is optional");
    }

    let initiate = |body: Option<&'static str>| {
        let mut request = app.authed(Method::POST, "/v1/signing-secret/initiate", token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        request.send()
    };
    for body in [None, Some("null"), Some("{}")] {
        let response = initiate(body).await.unwrap();
        assert_eq!(response.status(), 200, "initiate with {body:?}");
        let response = send(
            &app,
            Method::POST,
            "/v1/signing-secret/cancel",
            token,
            json!({}),
        )
        .await;
        assert_eq!(response.status(), 200);
    }

    let id = create_key(&app, token, "null roll").await;
    let response = app
        .authed(Method::POST, &format!("/v1/api-keys/{id}/roll"), token)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let body = json!({ "url": "https://example.com/hook" });
    let endpoint: Value = send(&app, Method::POST, "/v1/endpoints", token, body)
        .await
        .json()
        .await
        .unwrap();
    let replay = format!("/v1/endpoints/{}/replay", endpoint["id"].as_str().unwrap());
    let response = app
        .authed(Method::POST, &replay, token)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn a_cursor_that_names_no_listed_object_is_404(app: TestApp) {
    let merchant = app.create_merchant("Cursors").await;
    let token = merchant.test_token.as_str();
    // The key list is sorted in memory by any of its sort keys, so its cursor must name a
    // listed key; the lists paged in SQL by id (endpoints, events, deliveries…) take any
    // well-formed id as a position.
    for (path, unknown) in [("/v1/api-keys", hooksign::ids::ApiKeyId::new().to_string())] {
        let response = app
            .authed(
                Method::GET,
                &format!("{path}?starting_after={unknown}"),
                token,
            )
            .send()
            .await
            .unwrap();
        assert_error(response, 404, "invalid_request", "resource_missing").await;
        let response = app
            .authed(
                Method::GET,
                &format!("{path}?starting_after=garbage"),
                token,
            )
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_request", "invalid_cursor").await;
    }
}

async fn names_urls_and_header_values_are_checked_as_sent(app: TestApp) {
    let merchant = app.create_merchant("Names").await;
    let token = merchant.test_token.as_str();
    // Trimmed to 100 characters, but sent as 101: the document's maxLength is on what is sent.
    for name in [
        format!(" {}", "n".repeat(100)),
        "\tTabbed".to_owned(),
        "  ".to_owned(),
    ] {
        let response = send(
            &app,
            Method::POST,
            "/v1/api-keys",
            token,
            json!({ "name": name }),
        )
        .await;
        assert_error(response, 422, "invalid_request", "invalid_name").await;
    }
    let response = send(
        &app,
        Method::POST,
        "/v1/api-keys",
        token,
        json!({ "name": "  Padded  " }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let key: Value = response.json().await.unwrap();
    assert_eq!(key["name"], "Padded");

    // URLs: the documented shape (or an IP address), as sent.
    for url in [
        " https://example.com/hook",
        "https://example.com*",
        "http:/example.com",
    ] {
        let response = send(
            &app,
            Method::POST,
            "/v1/endpoints",
            token,
            json!({ "url": url }),
        )
        .await;
        assert_error(response, 422, "invalid_request", "invalid_url").await;
    }
    for url in [
        "HTTPS://Example.com:443/hook?x=1",
        "http://127.0.0.1:9/hook",
    ] {
        let response = send(
            &app,
            Method::POST,
            "/v1/endpoints",
            token,
            json!({ "url": url }),
        )
        .await;
        assert_eq!(response.status(), 201, "{url}");
    }

    let body = json!({ "url": "https://example.com/hook", "headers": { "X-Token": "caf\u{e9}" } });
    let response = send(&app, Method::POST, "/v1/endpoints", token, body).await;
    assert_error(response, 422, "invalid_request", "invalid_headers").await;
}
