//! Ids are case-insensitive on the way in and canonical on the way out: a lowercase id finds
//! its object, and a lowercase cursor gives the same page as the canonical one (it used to reach
//! SQL as typed, where `evt_01jd…` sorts after every canonical id and the first page repeated).

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::TestApp;
use crate::on_both_stores;

on_both_stores!(lowercase_ids_and_cursors_are_the_canonical_ones);

fn lowercase(id: &str) -> String {
    id.to_ascii_lowercase()
}

async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.authed(Method::GET, path, token).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn ids_of(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| object["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn lowercase_ids_and_cursors_are_the_canonical_ones(app: TestApp) {
    let merchant = app.create_merchant("Cases").await;
    for name in ["Cases 2", "Cases 3", "Cases 4"] {
        app.create_merchant(name).await;
    }
    let token = merchant.test_token.as_str();
    for name in ["one", "two", "three"] {
        let response = app
            .authed(Method::POST, "/v1/api-keys", token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    for n in 0..3 {
        endpoint(
            &app,
            token,
            json!({ "url": format!("http://127.0.0.1:9/hook{n}") }),
        )
        .await;
    }
    for n in 0..3 {
        send_event(&app, token, "order.created", json!({ "n": n })).await;
    }

    let lists = [
        ("/v1/api-keys", token),
        ("/v1/endpoints", token),
        ("/v1/events", token),
        ("/v1/deliveries", token),
        ("/v1/audit-events", token),
        ("/v1/merchants", app.operator_token.as_str()),
    ];
    for (list, token) in lists {
        let first = get_ok(&app, token, &format!("{list}?limit=2")).await;
        let first_ids = ids_of(&first);
        assert_eq!(first_ids.len(), 2, "{list}: {first}");
        let cursor = &first_ids[1];
        assert_ne!(&lowercase(cursor), cursor);
        let canonical = get_ok(
            &app,
            token,
            &format!("{list}?limit=2&starting_after={cursor}"),
        )
        .await;
        let lower = get_ok(
            &app,
            token,
            &format!("{list}?limit=2&starting_after={}", lowercase(cursor)),
        )
        .await;
        let next_ids = ids_of(&canonical);
        assert!(!next_ids.is_empty(), "{list}: a second page exists");
        assert!(
            next_ids.iter().all(|id| !first_ids.contains(id)),
            "{list}: the second page does not repeat the first"
        );
        assert_eq!(ids_of(&lower), next_ids, "{list}: the same page either way");
        assert_eq!(lower["has_more"], canonical["has_more"], "{list}");

        if list == "/v1/audit-events" {
            continue; // audit entries have no single-object route
        }
        let one = &first_ids[0];
        let found = get_ok(&app, token, &format!("{list}/{}", lowercase(one))).await;
        assert_eq!(&found["id"], one, "{list}: answers with the canonical id");
    }
}
