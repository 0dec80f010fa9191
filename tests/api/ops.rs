//! Health, readiness, metrics, OpenAPI, request ids, and the envelope on unknown routes.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_error, TestApp};
use crate::on_both_stores;

on_both_stores!(
    healthz_and_readyz_answer,
    readyz_reports_missing_migrations,
    metrics_count_requests_by_route_method_and_status,
    made_up_methods_cannot_mint_metric_series,
    openapi_lists_every_route_and_both_security_schemes,
    every_response_has_a_request_id_and_sane_ones_are_echoed,
    unknown_routes_and_methods_get_the_envelope,
    migrations_are_idempotent_across_restarts,
);

async fn healthz_and_readyz_answer(app: TestApp) {
    let health = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], app.state.store.backend());
}

async fn readyz_reports_missing_migrations(app: TestApp) {
    // Simulate a database the binary has not migrated: forget the applied migrations.
    app.execute("DELETE FROM _sqlx_migrations").await.unwrap();
    let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().contains("migrations"),
        "{body}"
    );
}

async fn metrics_count_requests_by_route_method_and_status(app: TestApp) {
    let merchant = app.create_merchant("Metrics Co").await;
    let path = format!("/v1/merchants/{}", merchant.id);
    assert_eq!(
        app.operator(Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let response = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    // The route template, not the raw path: label cardinality stays bounded.
    assert!(
        text.contains(
            r#"hooksign_http_requests_total{route="/v1/merchants/{id}",method="GET",status="200"}"#
        ),
        "{text}"
    );
    assert!(!text.contains(&merchant.id));
    assert!(
        text.contains("hooksign_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

async fn openapi_lists_every_route_and_both_security_schemes(app: TestApp) {
    let doc: Value = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/merchants", "get"),
        ("/v1/merchants", "post"),
        ("/v1/merchants/{id}", "get"),
        ("/v1/merchants/{id}", "patch"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys/{id}", "get"),
        ("/v1/api-keys/{id}", "patch"),
        ("/v1/api-keys/{id}", "delete"),
        ("/v1/api-keys/{id}/revoke", "post"),
        ("/v1/api-keys/{id}/roll", "post"),
        ("/v1/signing-secret", "get"),
        ("/v1/signing-secret/initiate", "post"),
        ("/v1/signing-secret/complete", "post"),
        ("/v1/signing-secret/revert", "post"),
        ("/v1/signing-secret/cancel", "post"),
        ("/v1/signing-secret/reveal", "post"),
        ("/v1/signing-secret/schedule", "put"),
        ("/v1/signing-secret/schedule", "delete"),
        ("/v1/sign", "post"),
        ("/v1/endpoints", "get"),
        ("/v1/endpoints", "post"),
        ("/v1/endpoints/{id}", "get"),
        ("/v1/endpoints/{id}", "patch"),
        ("/v1/endpoints/{id}", "delete"),
        ("/v1/endpoints/{id}/test", "post"),
        ("/v1/endpoints/{id}/replay", "post"),
        ("/v1/events", "get"),
        ("/v1/events", "post"),
        ("/v1/events/{id}", "get"),
        ("/v1/deliveries", "get"),
        ("/v1/deliveries/{id}", "get"),
        ("/v1/deliveries/{id}/retry", "post"),
        ("/v1/audit-events", "get"),
    ];
    for (path, method) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let listed: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(
        listed,
        expected.len(),
        "the document lists routes the router does not have"
    );
    // And every documented route exists in the router: it answers neither 404 nor 405, with
    // no credentials (401 comes before any lookup) and with a key that may call it (then a
    // well-formed id nobody has is that kind's own 404, never the router's).
    let merchant = app.create_merchant("Routes").await;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = with_unknown_id(path);
        let token = if path.starts_with("/v1/merchants") {
            &app.operator_token
        } else {
            &merchant.test_token
        };
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let anonymous = app.request(method.clone(), &concrete).send().await.unwrap();
            assert!(
                ![404, 405].contains(&anonymous.status().as_u16()),
                "{method} {path}: {}",
                anonymous.status()
            );
            let body = anonymous.text().await.unwrap();
            assert!(
                !body.contains("route_not_found") && !body.contains("method_not_allowed"),
                "{method} {path}: {body}"
            );
            if path.contains("{id}") {
                let authed = app
                    .authed(method.clone(), &concrete, token)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .unwrap();
                let status = authed.status().as_u16();
                let body: Value = authed.json().await.unwrap_or(Value::Null);
                assert_ne!(status, 405, "{method} {path}: {body}");
                let code = body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    !["route_not_found", "method_not_allowed"].contains(&code),
                    "{method} {path}: {body}"
                );
                if status == 404 {
                    assert_eq!(code, "resource_missing", "{method} {path}: {body}");
                    let id = concrete.split('/').nth(3).unwrap();
                    let message = body["error"]["message"].as_str().unwrap_or_default();
                    assert!(message.contains(id), "{method} {path}: {body}");
                }
            }
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
    assert!(doc["components"]["schemas"]["ErrorEnvelope"].is_object());
}

/// `path` with each `{id}` replaced by a well-formed id of the right kind that nobody has.
fn with_unknown_id(path: &str) -> String {
    use hooksign::ids::{ApiKeyId, DeliveryId, EndpointId, EventId, MerchantId};
    let Some((collection, _)) = path.split_once("/{id}") else {
        return path.to_owned();
    };
    let id = match collection {
        "/v1/merchants" => MerchantId::new().to_string(),
        "/v1/api-keys" => ApiKeyId::new().to_string(),
        "/v1/endpoints" => EndpointId::new().to_string(),
        "/v1/events" => EventId::new().to_string(),
        "/v1/deliveries" => DeliveryId::new().to_string(),
        other => panic!("which kind of id does {other}/{{id}} take? add it here"),
    };
    let concrete = path.replace("{id}", &id);
    assert!(!concrete.contains('{'), "another parameter in {path}");
    concrete
}

async fn every_response_has_a_request_id_and_sane_ones_are_echoed(app: TestApp) {
    let generated = app.request(Method::GET, "/healthz").send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("req_") && id.len() == 30, "{id}");
    let echoed = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42.a_b");
    let replaced = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "no spaces <here>")
        .send()
        .await
        .unwrap();
    assert!(replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    // Errors repeat the echoed id in the body.
    let error = app
        .request(Method::GET, "/v1/merchants")
        .header("x-request-id", "trace-43")
        .send()
        .await
        .unwrap();
    let body = assert_error(error, 401, "authentication", "missing_api_key").await;
    assert_eq!(body["error"]["requestId"], "trace-43");
}

async fn unknown_routes_and_methods_get_the_envelope(app: TestApp) {
    let missing = app.request(Method::GET, "/v1/nope").send().await.unwrap();
    assert_error(missing, 404, "invalid_request", "route_not_found").await;
    let wrong_method = app
        .request(Method::DELETE, "/v1/merchants")
        .send()
        .await
        .unwrap();
    assert_error(wrong_method, 405, "invalid_request", "method_not_allowed").await;
}

async fn migrations_are_idempotent_across_restarts(app: TestApp) {
    let merchant = app.create_merchant("Survivor").await;
    let (app, created) = app.restart().await;
    assert!(
        created.is_none(),
        "a restart must not create another operator key"
    );
    let response = app
        .operator(Method::GET, &format!("/v1/merchants/{}", merchant.id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE kind = 'operator'")
            .await,
        1
    );
    let ready = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

on_both_stores!(a_panicking_handler_gets_an_opaque_500_in_the_envelope);

async fn a_panicking_handler_gets_an_opaque_500_in_the_envelope(app: TestApp) {
    use axum::routing::get;
    let routes = axum::Router::new().route(
        "/boom",
        get(|| async {
            panic!("secret internals: database password is hunter2");
            #[allow(unreachable_code)]
            ""
        }),
    );
    let router = hooksign::api::with_middleware(routes, app.state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let response = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
    let body = assert_error(response, 500, "api_error", "internal_error").await;
    assert!(!body.to_string().contains("hunter2"), "{body}");
}

/// Any token is a valid HTTP method: were it a label, every made-up one would add series to
/// `/metrics` for good, and an unauthenticated client could grow the daemon's memory at will.
async fn made_up_methods_cannot_mint_metric_series(app: TestApp) {
    for n in 0..20 {
        let method = Method::from_bytes(format!("MADEUP{n}").as_bytes()).unwrap();
        let response = app.request(method, "/healthz").send().await.unwrap();
        assert_eq!(response.status(), 405, "a made-up method is not allowed");
    }
    let text = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("MADEUP"), "{text}");
    // The recorder is the process's: other tests' requests may be counted there too.
    let counted: u64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                r#"hooksign_http_requests_total{route="/healthz",method="other",status="405"} "#,
            )
        })
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("made-up methods are counted as `other`: {text}"));
    assert!(counted >= 20, "{counted}");
}
